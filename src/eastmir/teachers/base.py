"""The Teacher contract and the per-clip embedding cache.

A teacher has a ``name``, a ``version`` (bumped when its output changes, so
caches never mix), the ``sample_rate`` it wants, ``frame_seconds`` (the hop
between its embedding frames; ``None`` for one clip-level vector), ``dim``,
and ``embed(waveforms (batch, samples)) -> (batch, frames, dim)``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Teacher(nn.Module, ABC):
    name: str
    version: str
    sample_rate: int
    frame_seconds: float | None
    dim: int

    @abstractmethod
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at ``sample_rate`` → ``(batch, frames, dim)``."""

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.version}"


def embedding_dir(cache_root: str | Path, dataset: str, teacher_cache_name: str) -> Path:
    return Path(cache_root) / "embeddings" / dataset / teacher_cache_name


class EmbeddingStore:
    """Reads cached embeddings: ``load(clip_id) -> (frames, dim)`` float32."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = self.folder / "teacher.json"
        if not meta.is_file():
            raise FileNotFoundError(
                f"{self.folder}: no cached teacher embeddings; run `eastmir extract --teacher T --dataset D` first"
            )
        self.meta = json.loads(meta.read_text())
        self.dim: int = int(self.meta["dim"])
        self.frame_seconds: float | None = self.meta["frame_seconds"]

    def has(self, clip_id: str) -> bool:
        return (self.folder / f"{clip_id}.npy").exists()

    def load(self, clip_id: str) -> np.ndarray:
        path = self.folder / f"{clip_id}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path}: embedding missing; rerun `eastmir extract` (it resumes)")
        emb = np.load(path)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"{path}: embedding has shape {emb.shape}, expected (frames, {self.dim})")
        return emb.astype(np.float32)
