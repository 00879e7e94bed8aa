"""Time alignment of a student feature map and a teacher embedding
(Ding & Lerch 2023, §3.3): the sequence with fewer frames is repeated
frame by frame (integer factor ``ceil(T_long / T_short)``), then both are
cropped to the shorter length. A clip-level teacher (one frame) is thereby
repeated to every student frame.
"""

from __future__ import annotations

import math

import torch


def align_time(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a (batch, T_a, C_a)``, ``b (batch, T_b, C_b)`` → both with ``T`` frames."""
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(
            f"align_time expects (batch, time, channels) tensors, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}")
    ta, tb = a.shape[1], b.shape[1]
    if ta < tb:
        a = a.repeat_interleave(math.ceil(tb / ta), dim=1)
    elif tb < ta:
        b = b.repeat_interleave(math.ceil(ta / tb), dim=1)
    t = min(a.shape[1], b.shape[1])
    return a[:, :t], b[:, :t]
