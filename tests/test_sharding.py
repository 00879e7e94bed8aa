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


class Pairs(Numbers):
    """``(i, j)`` → ``[i, j]``, as ClipDataset serves a clip with its mixup partner."""

    def __getitem__(self, pair):
        return torch.tensor(pair)


def partnered(n, world, rank, seed=3):
    dm = module(n, world, rank, seed=seed)
    dm.mixup_partners = True
    dm.datasets["train"] = Pairs(n)
    return dm


@pytest.mark.parametrize("world", [1, 2])
def test_mixup_partners_come_from_the_whole_training_set_and_do_not_depend_on_the_processes(world):
    n = 200
    one = epoch(partnered(n, 1, 0).train_dataloader(), 0)
    parts = [epoch(partnered(n, world, r).train_dataloader(), 0) for r in range(world)]
    for step, batch in enumerate(one):
        assert sorted(chain.from_iterable(p[step] for p in parts)) == batch  # the same (clip, partner) pairs
    clips = [p[0] for b in one for p in b]
    partners = [p[1] for b in one for p in b]
    assert sorted(clips) == list(range(n))  # every clip once an epoch, as without partners
    in_batch = sum(p[1] in {q[0] for q in b} for b in one for p in b)
    assert in_batch < n / 4 and len(set(partners)) > n / 2  # drawn from all clips, not the batch's
    again = epoch(partnered(n, 1, 0).train_dataloader(), 0)
    assert again == one  # a resumed epoch draws the same partners
    assert epoch(partnered(n, 1, 0).train_dataloader(), 1) != one  # and the next epoch others


def test_a_clip_dataset_serves_a_pair_as_the_clip_with_its_partner(tmp_path):
    import numpy as np

    from eastmir.data.clips import ClipRecord
    from eastmir.data.store import write_entry
    from eastmir.training.datamodule import ClipDataset

    records = []
    for i in range(3):
        entry = tmp_path / f"{i}.npy"
        write_entry(entry, np.full((4, 10), i, dtype=np.float32))
        records.append(ClipRecord(f"c{i}", np.eye(3, dtype=np.float32)[i], np.ones(3, bool), entry, None))
    item = ClipDataset(records, "logmel", input_length=10)[(0, 2)]
    assert item["clip_id"] == "c0" and item["partner"]["clip_id"] == "c2"
    assert float(item["partner"]["logmel"].mean()) == 2.0 and item["partner"]["targets"].tolist() == [0, 0, 1]
