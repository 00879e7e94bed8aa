"""Cosine distance difference (Hung & Lerch 2022; Ding & Lerch 2023, Eq. 2).

Per frame, over the pairs ``i < j`` of the mini-batch:
``D_ij = |d_cos(l_i, l_j) − d_cos(v_i, v_j)|`` with ``d_cos = 1 − cos``;
averaged over pairs, then over aligned frames. Dimension-free, like distance
correlation. The teacher side is detached.

YAML::

    distillation:
      lambda: 0.8
      feature: {name: cosine_distance_difference, stages: [-1]}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eastmir.losses.alignment import align_time
from eastmir.registry import REGULARISERS


def pairwise_cosine_distance(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x (frames, n, channels)`` → ``1 − cos`` between samples, ``(frames, n, n)``."""
    unit = F.normalize(x, dim=-1, eps=eps)
    return 1.0 - unit @ unit.transpose(1, 2)


@REGULARISERS.register("cosine_distance_difference")
class CosineDistanceDifference(nn.Module):
    """``forward(student (batch, T_s, C_s), teacher (batch, T_t, C_t)) -> scalar``."""

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = align_time(student, teacher.detach().to(student.dtype))
        ds = pairwise_cosine_distance(student.transpose(0, 1), self.eps)
        dt = pairwise_cosine_distance(teacher.transpose(0, 1), self.eps)
        n = student.shape[0]
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=student.device), diagonal=1)
        return (ds - dt).abs()[:, upper].mean()
