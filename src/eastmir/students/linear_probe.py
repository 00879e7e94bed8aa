"""TeacherLR: logistic regression on the teacher embedding averaged over time.

It reads the cached embedding ``(batch, frames, dim)`` instead of a log-mel
and has no stages. Its trained head also gives the soft targets for KD.
"""

from __future__ import annotations

import torch
from torch import nn

from eastmir.inputs import InputKind
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


@STUDENTS.register("linear_probe")
class LinearProbe(Student):
    input_key = InputKind.EMBEDDING
    is_probe = True
    complexity_frontend = None

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(embedding_dim, num_classes)

    def forward(self, embedding: torch.Tensor) -> StudentOutput:
        return StudentOutput(self.head(embedding.mean(dim=1)), [])
