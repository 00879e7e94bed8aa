"""Dataset adapters. Each is a :class:`~eastmir.data.datasets.base.Dataset` registered in
:data:`eastmir.registry.DATASETS`, declaring its facts (classes, task, clip length, archives, options) and
``prepare(root, **options) -> Manifest``; formats stay here, nothing downstream knows which dataset it reads."""

from eastmir.data.datasets import esc50, fma_small, folder, magnatagatune, openmic, synth  # noqa: F401  (register them)
