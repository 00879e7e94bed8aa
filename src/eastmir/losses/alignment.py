"""Time alignment of a student feature map and a teacher embedding
(Ding & Lerch 2023, §3.3): each side's frames are repeated a whole number of
times, frame by frame (a a b b …), then both are cropped to the shorter
length.

- :func:`period_factors` (``distillation.feature.align: periods``, the
  authors'): the factors from the two frame periods, so frame i of one side
  meets the frames of the same time on the other: the coarser side is
  repeated ``round(coarse / fine)`` times (a clip-level teacher
  ``round(clip / stage period)`` times). On OpenMIC (CP-ResNet stages of
  0.16 s) a VGGish teacher (0.96 s) is repeated 6 times; on MagnaTagATune
  Mobile FCN's last stage (1.92 s) is repeated twice against VGGish: the
  factors of the authors' configs.
- :func:`align_time` (``align: ceil``, eastmir before 2026-11-30): the side
  with fewer frames repeated ``ceil(T_long / T_short)`` times, whatever the
  periods (× 7 on OpenMIC, frames misaligned by up to 1.7 s).
"""

from __future__ import annotations

import math

import torch


def period_factors(student_seconds: float, teacher_seconds: float | None, clip_seconds: float) -> tuple[int, int]:
    """``(k_student, k_teacher)``: how often each side's frames are repeated so that their periods agree
    (``teacher_seconds`` None: one vector per clip)."""
    if teacher_seconds is None:
        return 1, max(1, round(clip_seconds / student_seconds))
    if teacher_seconds >= student_seconds:
        return 1, max(1, round(teacher_seconds / student_seconds))
    return max(1, round(student_seconds / teacher_seconds)), 1


def align_by_factors(a: torch.Tensor, b: torch.Tensor, factors: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``a (batch, T_a, C_a)``, ``b (batch, T_b, C_b)``: each frame of ``a`` repeated ``factors[0]`` times and of
    ``b`` ``factors[1]`` times, then both cropped from the start to the shorter length."""
    a = a.repeat_interleave(factors[0], dim=1) if factors[0] > 1 else a
    b = b.repeat_interleave(factors[1], dim=1) if factors[1] > 1 else b
    t = min(a.shape[1], b.shape[1])
    return a[:, :t], b[:, :t]


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
