"""FitNet (Romero et al. 2015) as an EAsT regulariser.

Mean squared error between the student feature and the teacher embedding
after time alignment. When their widths differ, the student feature first
goes through a learned linear projection to the teacher's width (trained
with the student). With embedding compression the compact teacher embedding
already has the student's width, so no projection is made.

YAML::

    distillation:
      lambda: 0.6
      feature: {name: fitnet, stages: [-1]}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eastmir.losses.alignment import align_time
from eastmir.registry import REGULARISERS


@REGULARISERS.register("fitnet")
class FitNet(nn.Module):
    """``forward(student (batch, T_s, C_s), teacher (batch, T_t, C_t)) -> scalar`` MSE."""

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None) -> None:
        super().__init__()
        needs = student_dim is not None and teacher_dim is not None and student_dim != teacher_dim
        self.projection = nn.Linear(student_dim, teacher_dim) if needs else nn.Identity()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        projected = self.projection(student)
        if projected.shape[-1] != teacher.shape[-1]:
            raise ValueError(
                f"fitnet: student width {projected.shape[-1]} ≠ teacher width {teacher.shape[-1]}; "
                "build it with student_dim and teacher_dim"
            )
        projected, teacher = align_time(projected, teacher.detach().to(projected.dtype))
        return F.mse_loss(projected, teacher)
