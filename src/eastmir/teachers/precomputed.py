"""``precomputed``: any teacher whose embeddings the user computed elsewhere
(VGGish, OpenL3, PaSST, PANNs, MULE, …), one ``<clip_id>.npy`` of shape
``(frames, dim)`` (or ``(dim,)`` for one clip-level vector) per clip.

YAML (the published normalisations, REFERENCE.md §3)::

    teacher:
      name: precomputed
      id: vggish                      # names the teacher in tables
      folder: "{workdir}/data/openmic/embeddings/vggish"
      dim: 128
      frame_seconds: 0.96             # null for a clip-level vector (PANNs)
      shift: -128.0                   # stored x → (x + shift) · scale
      scale: 0.00390625               # VGGish uint8: (x − 128) / 256; OpenL3: shift −2.24
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eastmir.data.manifest import Manifest
from eastmir.registry import TEACHERS
from eastmir.teachers.base import EmbeddingStore


class PrecomputedStore(EmbeddingStore):
    """An :class:`EmbeddingStore` over user files, with an affine normalisation."""

    def __init__(
        self, folder: str | Path, dim: int, frame_seconds: float | None, shift: float = 0.0, scale: float = 1.0
    ) -> None:
        self.folder = Path(folder)
        self.meta = {"dim": dim, "frame_seconds": frame_seconds}
        self.dim, self.frame_seconds = int(dim), frame_seconds
        self.shift, self.scale = float(shift), float(scale)

    def load(self, clip_id: str) -> np.ndarray:
        path = self.folder / f"{clip_id}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: embedding missing")
        emb = np.load(path).astype(np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"{path}: embedding has shape {emb.shape}, expected (frames, {self.dim})")
        return (emb + self.shift) * self.scale


@TEACHERS.register("precomputed")
class PrecomputedTeacher:
    """Not a network: opens the user's embedding files (:meth:`open_store`)."""

    name = "precomputed"
    version = "files"
    precomputed = True

    @staticmethod
    def open_store(
        manifest: Manifest,
        folder: str,
        dim: int,
        frame_seconds: float | None = None,
        id: str | None = None,
        shift: float = 0.0,
        scale: float = 1.0,
    ) -> PrecomputedStore:
        store = PrecomputedStore(folder, dim, frame_seconds, shift, scale)
        if not store.folder.is_dir():
            raise FileNotFoundError(f"{store.folder}: no embedding folder for teacher {id or 'precomputed'}")
        missing = [c.clip_id for c in manifest.clips if not store.has(c.clip_id)]
        if missing:
            raise FileNotFoundError(
                f"{store.folder}: {len(missing)} of {len(manifest.clips)} clips have no embedding "
                f"(first: {missing[0]}.npy); compute them or drop the clips from the manifest"
            )
        return store
