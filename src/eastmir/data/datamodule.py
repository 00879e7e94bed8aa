"""Lightning data module: cached log-mels and teacher embeddings by split.

Each item is a dict: ``logmel (mels, frames)`` (when the student reads
log-mels), ``embedding (teacher frames, dim)`` (when a teacher is used),
``targets (classes,)`` float and ``mask (classes,)`` bool. Log-mels are
cropped or zero-padded to ``n_frames``.
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
    def __init__(self, clips: list[Clip], feature_dir: Path | None, n_frames: int | None, embeddings: EmbeddingStore | None) -> None:
        self.clips = clips
        self.feature_dir = feature_dir
        self.n_frames = n_frames
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.clips[i]
        item = {"targets": torch.from_numpy(clip.labels), "mask": torch.from_numpy(clip.mask)}
        if self.feature_dir is not None:
            logmel = np.load(self.feature_dir / f"{clip.clip_id}.npy")
            frames = logmel.shape[1]
            if frames >= self.n_frames:
                logmel = logmel[:, : self.n_frames]
            else:
                logmel = np.pad(logmel, ((0, 0), (0, self.n_frames - frames)))
            item["logmel"] = torch.from_numpy(np.ascontiguousarray(logmel))
        if self.embeddings is not None:
            item["embedding"] = torch.from_numpy(self.embeddings.load(clip.clip_id))
        return item


class ClipDataModule(L.LightningDataModule):
    """Splits ``train`` / ``valid`` / ``test``; clips missing from a cache (skipped as unreadable) are left out and counted."""

    def __init__(
        self,
        splits: dict[str, list[Clip]],
        feature_dir: Path | None,
        n_frames: int | None,
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
                if (feature_dir is None or (feature_dir / f"{c.clip_id}.npy").exists())
                and (embeddings is None or embeddings.has(c.clip_id))
            ]
            self.dropped[name] = len(clips) - len(kept)
            if not kept:
                raise ValueError(f"split {name!r} has no usable clip ({len(clips)} listed, none cached)")
            self.datasets[name] = ClipDataset(kept, feature_dir, n_frames, embeddings)
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
