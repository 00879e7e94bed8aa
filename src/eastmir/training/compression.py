"""Embedding compression (Ding & Lerch, "Embedding compression for
teacher-to-student knowledge transfer").

A trainable **teacher transformation** maps the teacher embedding
``(batch, T, C_t)`` to a compact embedding of the student stage's width
``C_s``; a linear head on its time average predicts the target labels,
giving ``L_teacher``. The transformation reads a *detached* teacher
embedding, and the distance loss reads a *detached* compact embedding, so
``L_teacher`` updates only the transformation and its head (never the
student or the teacher), and the distance loss updates only the student.

YAML::

    distillation:
      lambda: 0.6
      feature: {name: distance_correlation, stages: [-1]}
      compression: {name: linear}
"""

from __future__ import annotations

import torch
from torch import nn

from eastmir.registry import COMPRESSIONS


@COMPRESSIONS.register("linear")
class LinearTeacherTransform(nn.Module):
    """``teacher (batch, T, C_t)`` → ``(compact (batch, T, C_s), logits (batch, classes))``."""

    def __init__(self, teacher_dim: int, student_dim: int, num_classes: int) -> None:
        super().__init__()
        self.transform = nn.Linear(teacher_dim, student_dim)
        self.head = nn.Linear(student_dim, num_classes)

    def forward(self, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        compact = self.transform(teacher.detach())
        return compact, self.head(compact.mean(dim=1))
