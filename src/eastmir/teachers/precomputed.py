"""``precomputed``: a teacher whose embeddings the user computed elsewhere
(VGGish, OpenL3, PaSST, PANNs, MULE, …): one ``<clip_id>.npy`` per clip in a
folder, of shape ``(frames, dim)``, or ``(dim,)`` for one clip-level vector.

``eastmir extract --teacher precomputed --set path=DIR [dim=128]`` (or ``fit``
with the teacher section below) imports them into the store, checking every
file (``dim`` defaults to the width of the first file): a missing,
unreadable, wrong-shaped or non-finite file is reported with its clip, and
nothing of it reaches training. The published normalisations
(the published ones) are applied on import: ``x → (x + shift) · scale``.

YAML::

    teacher:
      name: precomputed
      id: vggish                      # names the teacher in tables
      path: "{data_root}/embeddings/vggish"
      dim: 128
      frame_seconds: 0.96             # null for a clip-level vector (PANNs)
      shift: -128.0                   # VGGish uint8: (x − 128) / 256
      scale: 0.00390625
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eastmir.errors import SourceError
from eastmir.registry import TEACHERS
from eastmir.teachers.base import TeacherSource


@TEACHERS.register("precomputed")
class PrecomputedTeacher(TeacherSource):
    """The user's embedding files in ``path``, ``dim`` values per frame."""

    name = "precomputed"
    version = "files"
    licence = "yours"
    source = "your own .npy files (teacher.path)"
    dims = "yours (teacher.dim)"
    period_words = "per clip or yours"

    def __init__(
        self,
        path: Path,
        dim: int | None = None,
        frame_seconds: float | None = None,
        id: str | None = None,
        shift: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        self.path = Path(path).absolute()
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: no such folder of embedding files (teacher.path)")
        if dim is None:
            dim = self._dim_of_first_file()
        if dim < 1:
            raise SourceError(f"teacher.dim must be positive, got {dim}")
        self.dim, self.frame_seconds = int(dim), frame_seconds
        self.id, self.shift, self.scale = id, float(shift), float(scale)

    def _dim_of_first_file(self) -> int:
        """``dim`` when not given: the last axis of the first file (every file is then checked against it)."""
        for path in sorted(self.path.glob("*.npy")):
            try:
                return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[-1])
            except (ValueError, OSError, IndexError):
                continue
        raise SourceError(f"{self.path}: no readable .npy file to take the embedding width from; set teacher.dim")

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "id": self.id,
            "path": str(self.path),
            "frame_seconds": self.frame_seconds,
            "shift": self.shift,
            "scale": self.scale,
        }

    @property
    def label(self) -> str:
        return self.id or self.name

    def source_file(self, audio_file: Path, clip_id: str) -> Path:
        return self.path / f"{clip_id}.npy"

    def read_source(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise SourceError(f"{path}: embedding file missing")
        try:
            emb = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise SourceError(f"{path}: not a readable .npy file ({err})") from err
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[1] != self.dim or emb.shape[0] < 1:
            raise SourceError(f"{path}: shape {emb.shape}, expected (frames, {self.dim}) or ({self.dim},)")
        if not np.issubdtype(emb.dtype, np.number):
            raise SourceError(f"{path}: holds {emb.dtype} values, expected numbers")
        emb = emb.astype(np.float32)
        if not np.isfinite(emb).all():
            bad = int(emb.size - np.isfinite(emb).sum())
            raise SourceError(f"{path}: {bad} of {emb.size} values are NaN or infinite")
        return emb

    def embed_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [(a + self.shift) * self.scale for a in arrays]
