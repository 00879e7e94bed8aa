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

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from eastmir.data.clips import ClipRecord, fit_frames, fit_time_axis
from eastmir.data.store import read_entry

__all__ = ["ClipDataModule", "ClipDataset", "ClipRecord", "StreamedClips"]


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


class StreamedClips(IterableDataset):
    """The samples of one split streamed from packed shards (``data.stream``), cropped and padded as above."""

    def __init__(
        self,
        url: str,
        index: dict,
        split: str,
        input_key: str,
        input_length: int | None,
        input_pad: float,
        embedding_frames: int | None,
        shuffle: int = 0,
        seed: int = 0,
    ) -> None:
        self.url, self.index, self.split, self.input_key = url, index, split, input_key
        self.input_length, self.input_pad, self.embedding_frames = input_length, input_pad, embedding_frames
        self.shuffle, self.seed = shuffle, seed

    def __len__(self) -> int:
        return self.index["splits"][self.split]["clips"]

    def __iter__(self):
        from eastmir.data.streaming import stream_split

        for sample in stream_split(self.url, self.index, self.split, self.shuffle, self.seed):
            item: dict[str, Any] = {
                "clip_id": sample["clip_id"],
                "targets": torch.from_numpy(sample["targets"]),
                "mask": torch.from_numpy(sample["mask"]),
            }
            if "input" in sample:
                x = fit_time_axis(sample["input"], self.input_length, self.input_pad)
                item[self.input_key] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            if "embedding" in sample:
                e = fit_frames(sample["embedding"], self.embedding_frames)
                item["embedding"] = torch.from_numpy(np.ascontiguousarray(e, dtype=np.float32))
            yield item


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
        self.datasets: dict[str, Dataset] = {
            name: ClipDataset(records, input_key, input_length, input_pad, embedding_frames)
            for name, records in splits.items()
        }
        self.batch_size = batch_size
        self.num_workers = num_workers

    @classmethod
    def streamed(
        cls,
        url: str,
        index: dict,
        input_key: str,
        input_length: int | None,
        input_pad: float,
        embedding_frames: int | None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> ClipDataModule:
        """Splits streamed from packed shards (``data.stream``); training shuffles shards and a 1000-sample buffer."""
        module = cls({}, input_key, batch_size=batch_size, num_workers=num_workers)
        module.datasets = {
            split: StreamedClips(
                url,
                index,
                split,
                input_key,
                input_length,
                input_pad,
                embedding_frames,
                1000 if split == "train" else 0,
                seed,
            )
            for split in ("train", "valid", "test")
        }
        return module

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[name]
        iterable = isinstance(dataset, IterableDataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and not iterable,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
