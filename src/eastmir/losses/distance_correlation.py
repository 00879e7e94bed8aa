"""Distance correlation regulariser (Székely et al. 2007; Ding & Lerch 2023, Eq. 3–6).

Per frame, over the ``n`` samples of the mini-batch: ``a_ij = ||l_i − l_j||₂``,
double-centred to ``A``; likewise ``B`` for the teacher;
``V²(l, v) = mean(A∘B)`` and ``R² = V²(l, v) / sqrt(V²(l, l)·V²(v, v))``
(the biased squared distance correlation, as ``dcor.distance_correlation_sqr``).
The loss is ``1 − R²`` averaged over aligned frames.

Scale invariance: no ε is added anywhere. The square roots are taken only
where their argument is positive (a zero distance, such as the diagonal or two
identical samples, gives a distance of 0 and a zero gradient instead of an
infinite one), and ``R²`` is defined as 0 when a side has no spread at all
(every sample identical), as ``dcor`` does. So features scaled by any factor
from 1e-6 to 1e4 give the same loss. The teacher side is detached: no
gradient ever reaches the embedding.

YAML::

    distillation:
      lambda: 0.6
      feature: {name: distance_correlation, stages: [-1]}   # final stage; or "all"
"""

from __future__ import annotations

import torch
from torch import nn

from eastmir.losses.alignment import align_time
from eastmir.registry import REGULARISERS


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient where ``x == 0``."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def double_centred_distances(x: torch.Tensor) -> torch.Tensor:
    """``x (frames, n, channels)`` → double-centred Euclidean distance matrices ``(frames, n, n)``."""
    d = safe_sqrt((x.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1))
    return d - d.mean(dim=1, keepdim=True) - d.mean(dim=2, keepdim=True) + d.mean(dim=(1, 2), keepdim=True)


def squared_distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased squared distance correlation, batched over a leading axis.

    ``x (frames, n, c_x)``, ``y (frames, n, c_y)`` → ``(frames,)`` in [0, 1];
    0 for a frame where either side has no spread.
    """
    a = double_centred_distances(x)
    b = double_centred_distances(y)
    v_xy = (a * b).mean(dim=(1, 2))
    denominator = safe_sqrt((a * a).mean(dim=(1, 2))) * safe_sqrt((b * b).mean(dim=(1, 2)))
    defined = denominator > 0
    return torch.where(defined, v_xy / torch.where(defined, denominator, torch.ones_like(denominator)), 0.0)


@REGULARISERS.register("distance_correlation")
class DistanceCorrelationLoss(nn.Module):
    """``forward(student (batch, T_s, C_s), teacher (batch, T_t, C_t)) -> scalar``:
    the mean over aligned frames of ``1 − R²``.

    ``student_dim`` and ``teacher_dim`` are part of the regulariser contract
    (every regulariser is built per stage with them); distance correlation
    compares distance matrices, so it needs neither.
    """

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None) -> None:
        super().__init__()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = align_time(student, teacher.detach().to(student.dtype))
        r2 = squared_distance_correlation(student.transpose(0, 1), teacher.transpose(0, 1))
        return (1.0 - r2).mean()
