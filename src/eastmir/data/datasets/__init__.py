"""Dataset adapters. Each registers ``prepare(root, **options) -> Manifest``
in :data:`eastmir.registry.DATASETS`; formats stay here, nothing downstream
knows which dataset it reads."""

from eastmir.data.datasets import esc50, fma_small, folder, magnatagatune, openmic, synth  # noqa: F401  (register them)
