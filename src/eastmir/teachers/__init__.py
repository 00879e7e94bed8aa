"""Teachers: frozen pretrained networks run once, offline; their embeddings
are cached per clip. Each registers itself in :data:`eastmir.registry.TEACHERS`."""

from eastmir.teachers import aisfx, ensemble, musicnn, openl3, panns, passt, precomputed, vggish  # noqa: F401
