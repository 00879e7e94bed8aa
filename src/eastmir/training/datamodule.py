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

Samplers (the same with one process or several, so DDP sees the batches one
process would see):

- ``train``: a ``DistributedSampler`` seeded with the run's seed and
  reshuffled each epoch (``set_epoch``). With ``W`` processes rank ``r`` takes
  every ``W``-th clip of the epoch's permutation in batches of
  ``batch_size / W``, so the clips of step ``k`` over all ranks are exactly
  the ``k``-th batch of one process: ``batch_size`` is the global batch.
- with ``mixup_partners`` the training sampler yields ``(clip, partner)``
  pairs: each clip's mixup partner drawn from the whole training split, by
  a generator seeded with ``(seed, epoch, clip)`` (the same pairs with any
  number of processes), and each item carries its partner's item under
  ``partner`` (the authors' mixup: their dataset draws a random second clip).
- ``valid`` / ``test``: in order; with several processes each rank takes
  every ``W``-th clip, never padded with repeats (a repeated clip would
  change mAP), and the metrics gather all of them (torchmetrics).
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler

from eastmir.config import RunConfig
from eastmir.data.clips import ClipRecord, RunData, fit_frames, fit_time_axis
from eastmir.data.store import read_entry
from eastmir.errors import ConfigError

PREFETCH = 4  # batches each loader worker keeps ready: a slow read or decode does not stall the step

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

    def __getitem__(self, i: int | tuple[int, int]) -> dict[str, Any]:
        """Clip ``i``'s item; for a pair ``(i, j)`` (:class:`WithPartners`), ``i``'s with ``j``'s under ``partner``."""
        if isinstance(i, tuple):
            return dict(self[i[0]], partner=self[i[1]])
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
        by_rank: bool = True,
    ) -> None:
        """``by_rank``: each DDP process streams its share of the shards (else all of them)."""
        self.url, self.index, self.split, self.input_key = url, index, split, input_key
        self.input_length, self.input_pad, self.embedding_frames = input_length, input_pad, embedding_frames
        self.shuffle, self.seed, self.by_rank = shuffle, seed, by_rank

    def __len__(self) -> int:
        return self.index["splits"][self.split]["clips"]

    def __iter__(self):
        from eastmir.data.streaming import stream_split

        for sample in stream_split(self.url, self.index, self.split, self.shuffle, self.seed, self.by_rank):
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
        seed: int = 0,
        mixup_partners: bool = False,
    ) -> None:
        """``batch_size``: the global batch (over all processes); ``seed``: the training shuffle's;
        ``mixup_partners``: training items carry a partner drawn from the whole training split."""
        super().__init__()
        self.mixup_partners = mixup_partners
        self.datasets: dict[str, Dataset] = {
            name: ClipDataset(records, input_key, input_length, input_pad, embedding_frames)
            for name, records in splits.items()
        }
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    @classmethod
    def for_run(cls, data: RunData, config: RunConfig) -> ClipDataModule:
        """The run's data module: over the store's clips, or streamed from packed shards (``data.stream``)."""
        lengths = (data.input_key, data.input_length, data.input_pad, data.embedding_frames)
        settings = {"batch_size": config.data.batch_size, "num_workers": config.data.num_workers, "seed": config.seed}
        if data.stream:
            return cls.streamed(*data.stream, *lengths, **settings)
        aug = config.augmentation
        partners = aug.mixup_alpha > 0 and aug.mixup_partner == "training_set"
        return cls(data.records, *lengths, **settings, mixup_partners=partners)

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
        module = cls({}, input_key, batch_size=batch_size, num_workers=num_workers, seed=seed)  # no partners
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

    def _world(self) -> tuple[int, int]:
        """``(processes, this process's rank)`` of the trainer this module serves (``(1, 0)`` without one)."""
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _divides(self, world: int) -> int:
        """``world``, after checking that the global batch divides evenly over that many processes."""
        if self.batch_size % world:
            raise ConfigError(
                f"data.batch_size: {self.batch_size} is the global batch and must divide evenly over "
                f"{world} processes; use a multiple of {world}"
            )
        return world

    def _loader(self, name: str, shuffle: bool, sharded: bool = True) -> DataLoader:
        dataset = self.datasets[name]
        world, rank = self._world() if sharded else (1, 0)
        batch_size, sampler = self.batch_size, None
        if isinstance(dataset, StreamedClips):
            if not sharded:  # every clip on this process
                dataset = copy.copy(dataset)
                dataset.by_rank = False
            elif shuffle:
                batch_size //= self._divides(world)  # the processes stream disjoint shards
        elif shuffle:
            batch_size //= self._divides(world)
            # drop_last: a tail that does not divide over the processes is left out (none with one process)
            sampler = (WithPartners if self.mixup_partners else DistributedSampler)(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
            )
        elif world > 1:
            sampler = EveryNth(len(dataset), world, rank)
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,  # no new worker processes (and imports) every epoch
            prefetch_factor=PREFETCH if workers > 0 else None,
            pin_memory=self._on_gpu(),  # page-locked batches: the copy to the GPU runs beside the step
        )

    def _on_gpu(self) -> bool:
        """Whether the trainer this module serves runs on a CUDA device."""
        device = getattr(getattr(getattr(self, "trainer", None), "strategy", None), "root_device", None)
        return device is not None and device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def full_loader(self, name: str) -> DataLoader:
        """Every clip of split ``name`` in order, on every process (for per-clip outputs)."""
        return self._loader(name, False, sharded=False)


class WithPartners(DistributedSampler):
    """The training sampler's clips, each as ``(clip, partner)``: the partner drawn uniformly from the whole
    training split by a generator seeded with ``(seed, epoch, clip)``, so the pairs do not depend on the number
    of processes and a resumed epoch draws the same ones."""

    def __iter__(self):
        n = len(self.dataset)
        for i in super().__iter__():
            yield i, int(np.random.default_rng((self.seed, self.epoch, i)).integers(n))


class EveryNth(Sampler[int]):
    """Indices ``rank, rank + W, rank + 2W, …`` below ``n``: an evaluation shard without repeated clips."""

    def __init__(self, n: int, world: int, rank: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
