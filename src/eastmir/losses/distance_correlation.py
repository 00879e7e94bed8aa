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

**Estimator.** ``estimator: biased`` (the default, as in the papers) is the
V-statistic above. Over a batch of 16, unrelated features of 256–512
dimensions already give ``R² ≈ 0.98`` with it (it tends to 1 as the dimension
grows; Székely & Rizzo 2013), so ``1 − R²`` moves within a few hundredths.
``estimator: unbiased`` is the bias-corrected estimator (Székely & Rizzo 2014,
as ``dcor.u_distance_correlation_sqr``): the distance matrices are U-centred
(``Ã_ij = a_ij − a_i·/(n−2) − a_·j/(n−2) + a_··/((n−1)(n−2))``, ``Ã_ii = 0``),
``(Ã·B̃) = Σ_{i≠j} Ã_ij B̃_ij / (n(n−3))`` and ``R²_u = (Ã·B̃) / sqrt(|(Ã·Ã)(B̃·B̃)|)``,
about 0 for unrelated features (it can be negative). It needs at least 4
samples per batch (checked with the config); a smaller batch (the last
validation batch) counts as ``R²_u = 0``.

YAML::

    distillation:
      lambda: 0.6
      feature: {name: distance_correlation, stages: [-1]}   # final stage; or "all"
      # feature: {name: distance_correlation, estimator: unbiased}
"""

from __future__ import annotations

from typing import Literal

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


UNBIASED_MIN_BATCH = 4  # n (n − 3) > 0


def u_centred_distances(x: torch.Tensor) -> torch.Tensor:
    """``x (frames, n, channels)`` → U-centred Euclidean distance matrices ``(frames, n, n)``, zero diagonal."""
    n = x.shape[1]
    d = safe_sqrt((x.unsqueeze(2) - x.unsqueeze(1)).square().sum(-1))
    rows, columns = d.sum(dim=2, keepdim=True), d.sum(dim=1, keepdim=True)
    total = d.sum(dim=(1, 2), keepdim=True)
    u = d - rows / (n - 2) - columns / (n - 2) + total / ((n - 1) * (n - 2))
    return u * (1 - torch.eye(n, dtype=x.dtype, device=x.device))


def u_squared_distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bias-corrected squared distance correlation, batched over a leading axis (``dcor.u_distance_correlation_sqr``).

    ``x (frames, n, c_x)``, ``y (frames, n, c_y)`` → ``(frames,)``, about 0 for unrelated features (it can be
    negative); 0 for a frame where a side has no spread, and for ``n`` below 4.
    """
    n = x.shape[1]
    if n < UNBIASED_MIN_BATCH:
        return x.new_zeros(x.shape[0]) + 0.0 * (x.sum() + y.sum())  # keeps the graph, no gradient
    a = u_centred_distances(x)
    b = u_centred_distances(y)
    scale = 1.0 / (n * (n - 3))
    v_xy = (a * b).sum(dim=(1, 2)) * scale
    v_x, v_y = (a * a).sum(dim=(1, 2)) * scale, (b * b).sum(dim=(1, 2)) * scale
    denominator = safe_sqrt((v_x * v_y).abs())
    defined = denominator > 0
    return torch.where(defined, v_xy / torch.where(defined, denominator, torch.ones_like(denominator)), 0.0)


ESTIMATORS = {"biased": squared_distance_correlation, "unbiased": u_squared_distance_correlation}


@REGULARISERS.register("distance_correlation")
class DistanceCorrelationLoss(nn.Module):
    """``forward(student (batch, T_s, C_s), teacher (batch, T_t, C_t)) -> scalar``:
    the mean over aligned frames of ``1 − R²``.

    ``student_dim`` and ``teacher_dim`` are part of the regulariser contract
    (every regulariser is built per stage with them); distance correlation
    compares distance matrices, so it needs neither.
    """

    def __init__(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        estimator: Literal["biased", "unbiased"] = "biased",
    ) -> None:
        super().__init__()
        self.estimator = estimator
        self.r2 = ESTIMATORS[estimator]

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = align_time(student, teacher.detach().to(student.dtype))
        r2 = self.r2(student.transpose(0, 1), teacher.transpose(0, 1))
        return (1.0 - r2).mean()
