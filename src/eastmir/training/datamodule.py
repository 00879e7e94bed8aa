"""Lightning data module: stored student inputs and teacher embeddings by split.

Each item is a dict: ``clip_id``; the student's input under its
``input_key`` (``logmel (mels, frames)`` or ``waveform (samples,)``);
``embedding (teacher frames, dim)`` when a teacher is used; ``targets
(classes,)`` float and ``mask (classes,)`` bool.

Fixed lengths, so clips of slightly different lengths batch together:

- the input is cropped to its first ``input_length`` values along time, or
  padded at the end with ``input_pad`` (the log-mel of silence, or 0 for a
  waveform);
- the embedding is cropped to its first ``embedding_frames`` frames, or padded
  at the end by repeating its last frame (a repeated frame keeps the distance
  structure that distance correlation compares; zeros would add a fake
  "silent" teacher frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eastmir.data.store import read_entry


@dataclass(frozen=True)
class ClipRecord:
    """One usable clip: labels and the store entries of its input and embedding."""

    clip_id: str
    targets: np.ndarray  # (classes,) float32
    mask: np.ndarray  # (classes,) bool
    input_entry: Path | None = None
    embedding_entry: Path | None = None


def fit_time_axis(x: np.ndarray, length: int, pad_value: float) -> np.ndarray:
    """Crop or pad the last axis of ``x`` to ``length`` (pad at the end with ``pad_value``)."""
    have = x.shape[-1]
    if have >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - have)], constant_values=pad_value)


def fit_frames(embedding: np.ndarray, frames: int) -> np.ndarray:
    """Crop ``(T, dim)`` to ``frames`` frames, or pad it by repeating its last frame."""
    have = embedding.shape[0]
    if have >= frames:
        return embedding[:frames]
    return np.concatenate([embedding, np.repeat(embedding[-1:], frames - have, axis=0)])


class ClipDataset(Dataset):
    def __init__(
        self,
        records: list[ClipRecord],
        input_key: str,
        input_length: int | None = None,
        input_pad: float = 0.0,
        embedding_frames: int | None = None,
    ) -> None:
        self.records = records
        self.input_key = input_key
        self.input_length = input_length
        self.input_pad = input_pad
        self.embedding_frames = embedding_frames

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        item: dict[str, Any] = {
            "clip_id": r.clip_id,
            "targets": torch.from_numpy(r.targets),
            "mask": torch.from_numpy(r.mask),
        }
        if r.input_entry is not None:
            x = fit_time_axis(read_entry(r.input_entry), self.input_length, self.input_pad)
            item[self.input_key] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if r.embedding_entry is not None:
            e = fit_frames(read_entry(r.embedding_entry), self.embedding_frames)
            item["embedding"] = torch.from_numpy(np.ascontiguousarray(e, dtype=np.float32))
        return item


class ClipDataModule(L.LightningDataModule):
    """``train`` / ``valid`` / ``test`` datasets of :class:`ClipRecord`."""

    def __init__(
        self,
        splits: dict[str, list[ClipRecord]],
        input_key: str,
        input_length: int | None = None,
        input_pad: float = 0.0,
        embedding_frames: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = {
            name: ClipDataset(records, input_key, input_length, input_pad, embedding_frames)
            for name, records in splits.items()
        }
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[name],
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(self.datasets[name]) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
