"""CrossProcessBatchNorm on two CPU processes (gloo) equals BatchNorm on the whole batch: outputs,
gradients and running statistics."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from eastmir.training.batchnorm import CrossProcessBatchNorm, synchronise_batchnorm


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    model[1].weight.data.uniform_(0.5, 1.5)
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 2, 4, 4, generator=g) * 3 + 1, torch.randn(8, 2, generator=g)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = synchronise_batchnorm(_model(), "cpu")
    x, y = _batch()
    part = slice(rank * 4, rank * 4 + 4)
    out_part = model(x[part])
    # the global mean squared error: each process's share, summed over processes by averaging × world
    loss = ((out_part - y[part]) ** 2).sum() / y.numel() * world
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for g in grads:
        dist.all_reduce(g)
        g /= world
    out[rank] = (out_part.detach(), grads, model[1].running_mean.clone(), model[1].running_var.clone())
    dist.destroy_process_group()


def test_two_processes_compute_the_whole_batch_s_batchnorm():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)

    model = _model()
    x, y = _batch()
    whole = model(x)
    ((whole - y) ** 2).mean().backward()
    assert isinstance(synchronise_batchnorm(_model(), "cpu")[1], CrossProcessBatchNorm)
    joined = torch.cat([out[0][0], out[1][0]])
    assert torch.allclose(joined, whole.detach(), atol=1e-5)
    for rank in (0, 1):
        for got, want in zip(out[rank][1], [p.grad for p in model.parameters()], strict=True):
            assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(out[rank][2], model[1].running_mean, atol=1e-6)
        assert torch.allclose(out[rank][3], model[1].running_var, atol=1e-5)


def test_one_process_or_eval_mode_is_plain_batchnorm():
    plain = _model()
    converted = synchronise_batchnorm(_model(), "cpu")
    x, _ = _batch()
    assert torch.equal(converted(x), plain(x))
    assert set(converted.state_dict()) == set(plain.state_dict())
    converted.eval(), plain.eval()
    assert torch.equal(converted(x), plain(x))
