"""The Student contract.

``forward(x) -> StudentOutput(logits (batch, classes) pre-sigmoid,
stages: list of (batch, T_k, C_k))``. ``stage_dims[k]`` is ``C_k`` and
``stage_hops[k]`` the number of input frames per stage-``k`` frame (so the
stage's frame period is ``stage_hops[k] × front-end hop``). Probabilities
are made only in metrics and inference, never inside ``forward``.

A student declares what the rest of eastmir asks of it as class attributes
(``input_key``, ``min_frames``, ``is_probe``, ``complexity_options``,
``complexity_frontend``): adding one is its file plus its registration.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from eastmir.audio import FrontendConfig


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (batch, classes), before the sigmoid / softmax
    stages: list[torch.Tensor]  # each (batch, time, channels)


class Student(nn.Module):
    """Base class; ``input_key`` names the batch entry the student reads."""

    input_key: str = "logmel"
    min_frames: int = 1  # the shortest input (frames, or samples for waveform students) the network accepts
    stage_dims: tuple[int, ...] = ()
    stage_hops: tuple[int, ...] = ()
    # capabilities (what the pipeline asks of a student instead of its name):
    is_probe: bool = False  # reads the teacher's embedding itself (TeacherLR): no distillation, no front end
    # `eastmir complexity` builds it with these options and front end (None: it reads the waveform itself)
    complexity_options: ClassVar[dict[str, Any]] = {}
    complexity_frontend: ClassVar[FrontendConfig | None] = FrontendConfig()

    def backbone_parameters(self) -> int:
        """Parameters without the classifier head (the papers' complexity figure)."""
        head = sum(p.numel() for p in self.head.parameters()) if hasattr(self, "head") else 0
        return sum(p.numel() for p in self.parameters()) - head
