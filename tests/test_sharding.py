"""The data module's batches over W processes are exactly one process's batches, split (what DDP needs)."""

from __future__ import annotations

from itertools import chain
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from eastmir.errors import ConfigError
from eastmir.training.datamodule import ClipDataModule


class Numbers(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(i)


def module(n, world, rank, batch=8, seed=3):
    dm = ClipDataModule({}, "logmel", batch_size=batch, seed=seed)
    dm.datasets = {"train": Numbers(n), "valid": Numbers(n), "test": Numbers(n)}
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank) if world > 1 else None
    return dm


def epoch(loader, number):
    loader.sampler.set_epoch(number)
    return [sorted(b.tolist()) for b in loader]


@pytest.mark.parametrize("world", [2, 4])
def test_each_step_s_clips_over_all_processes_are_one_process_s_batch(world):
    n = 67  # neither a multiple of the batch nor of the processes
    for number in (0, 1):
        one = epoch(module(n, 1, 0).train_dataloader(), number)
        parts = [epoch(module(n, world, r).train_dataloader(), number) for r in range(world)]
        assert all(len(p) == len(one) == n // 8 for p in parts)
        for step, batch in enumerate(one):
            assert sorted(chain.from_iterable(p[step] for p in parts)) == batch
    assert epoch(module(n, 1, 0).train_dataloader(), 0) != epoch(module(n, 1, 0).train_dataloader(), 1)


def test_evaluation_shards_cover_every_clip_once():
    shards = [[int(i) for b in module(15, 2, r).val_dataloader() for i in b] for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(15))
    full = [int(i) for b in module(15, 2, 1).full_loader("test") for i in b]
    assert full == list(range(15))


def test_a_global_batch_that_does_not_divide_is_refused():
    with pytest.raises(ConfigError, match=r"data.batch_size: 9 is the global batch .* multiple of 2"):
        module(20, 2, 0, batch=9).train_dataloader()
