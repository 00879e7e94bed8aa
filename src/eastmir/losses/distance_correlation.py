"""Distance correlation regulariser (Székely et al. 2007; Ding & Lerch 2023, Eq. 3–6).

Per frame, over the ``n`` samples of the mini-batch: ``a_ij = ||l_i − l_j||₂``,
double-centred to ``A``; likewise ``B`` for the teacher;
``V²(l, v) = mean(A∘B)`` and ``R² = V²(l, v) / sqrt(V²(l, l)·V²(v, v))``
(the biased squared distance correlation). The loss is ``1 − R²`` averaged
over aligned frames. An ε inside the square roots keeps a batch of identical
samples finite (0/0 otherwise). The teacher side is detached: no gradient
ever reaches the embedding.

YAML::

    regulariser:
      name: distance_correlation
      stages: [-1]        # final stage; or "all"
      weight: 0.6         # λ
"""

from __future__ import annotations

import torch
from torch import nn

from eastmir.losses.alignment import align_time
from eastmir.registry import REGULARISERS


def _double_centred_distances(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x (frames, n, channels)`` → double-centred distance matrices ``(frames, n, n)``."""
    sq = (x.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1)
    d = torch.sqrt(sq + eps)
    return d - d.mean(dim=1, keepdim=True) - d.mean(dim=2, keepdim=True) + d.mean(dim=(1, 2), keepdim=True)


def squared_distance_correlation(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Biased squared distance correlation, batched over a leading axis.

    ``x (frames, n, c_x)``, ``y (frames, n, c_y)`` → ``(frames,)`` in [0, 1].
    """
    a = _double_centred_distances(x, eps)
    b = _double_centred_distances(y, eps)
    v_xy = (a * b).mean(dim=(1, 2))
    v_xx = (a * a).mean(dim=(1, 2))
    v_yy = (b * b).mean(dim=(1, 2))
    return v_xy / torch.sqrt(v_xx * v_yy + eps)


@REGULARISERS.register("distance_correlation")
class DistanceCorrelationLoss(nn.Module):
    """``forward(student (batch, T_s, C_s), teacher (batch, T_t, C_t)) -> scalar`` = mean over frames of ``1 − R²``."""

    def __init__(self, eps: float = 1e-9, **_: object) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = align_time(student, teacher.detach().to(student.dtype))
        r2 = squared_distance_correlation(student.transpose(0, 1), teacher.transpose(0, 1), self.eps)
        return (1.0 - r2).mean()
