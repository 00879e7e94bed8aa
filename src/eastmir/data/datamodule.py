"""Lightning data module: cached student inputs and teacher embeddings by split.

Each item is a dict: the student's input under its ``input_key``
(``logmel (mels, frames)`` or ``waveform (samples,)``), ``embedding
(teacher frames, dim)`` when a teacher is used, ``targets (classes,)`` float
and ``mask (classes,)`` bool. Inputs are cropped or zero-padded along their
last axis to ``length``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from eastmir.data.manifest import Clip
from eastmir.teachers.base import EmbeddingStore


class ClipDataset(Dataset):
    def __init__(
        self,
        clips: list[Clip],
        input_key: str | None,
        input_dir: Path | None,
        length: int | None,
        embeddings: EmbeddingStore | None,
    ) -> None:
        self.clips = clips
        self.input_key = input_key
        self.input_dir = input_dir
        self.length = length
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.clips[i]
        item = {"targets": torch.from_numpy(clip.labels), "mask": torch.from_numpy(clip.mask)}
        if self.input_dir is not None:
            x = np.load(self.input_dir / f"{clip.clip_id}.npy")
            have = x.shape[-1]
            if have >= self.length:
                x = x[..., : self.length]
            else:
                x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, self.length - have)])
            item[self.input_key] = torch.from_numpy(np.ascontiguousarray(x))
        if self.embeddings is not None:
            item["embedding"] = torch.from_numpy(self.embeddings.load(clip.clip_id))
        return item


class ClipDataModule(L.LightningDataModule):
    """Splits ``train`` / ``valid`` / ``test``; clips missing from a cache (skipped as unreadable) are left out and counted."""

    def __init__(
        self,
        splits: dict[str, list[Clip]],
        input_key: str | None,
        input_dir: Path | None,
        length: int | None,
        embeddings: EmbeddingStore | None,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.datasets: dict[str, ClipDataset] = {}
        self.dropped: dict[str, int] = {}
        for name, clips in splits.items():
            kept = [
                c
                for c in clips
                if (input_dir is None or (input_dir / f"{c.clip_id}.npy").exists())
                and (embeddings is None or embeddings.has(c.clip_id))
            ]
            self.dropped[name] = len(clips) - len(kept)
            if not kept:
                raise ValueError(f"split {name!r} has no usable clip ({len(clips)} listed, none cached)")
            self.datasets[name] = ClipDataset(kept, input_key, input_dir, length, embeddings)
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
