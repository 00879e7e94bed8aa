"""What every benchmark here shares: one training step timed, contenders run round by round, the machine line.

Benchmarks import it as a sibling (``python benchmarks/<name>.py`` puts this folder on the path).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch


def training_step(system, optimizer: torch.optim.Optimizer, batch: dict, bf16: bool = False) -> float:
    """Seconds of one step of ``system`` (an ``EastSystem``): its losses (the student under bfloat16 autocast
    when ``bf16``), backward, optimiser step."""
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss = system.losses(batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def round_by_round(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each contender once per round, the order rotated by one every round, so a change of load or clock
    hits them all alike; returns what each call returned (a time or a rate), per contender, in round order."""
    names = list(contenders)
    measured: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            measured[name].append(contenders[name]())
    return measured


def machine(threads: int) -> str:
    """The line every benchmark prints first: PyTorch, the pinned threads and the load average."""
    torch.set_num_threads(threads)
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) pinned, "
        f"1-minute load average {os.getloadavg()[0]:.2f}"
    )
