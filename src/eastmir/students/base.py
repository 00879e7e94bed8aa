"""The Student contract.

``forward(x) -> StudentOutput(logits (batch, classes) pre-sigmoid,
stages: list of (batch, T_k, C_k))``. ``stage_dims[k]`` is ``C_k`` and
``stage_hops[k]`` the number of input frames per stage-``k`` frame (so the
stage's frame period is ``stage_hops[k] × front-end hop``). Probabilities
are made only in metrics and inference, never inside ``forward``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (batch, classes), before the sigmoid / softmax
    stages: list[torch.Tensor]  # each (batch, time, channels)


class Student(nn.Module):
    """Base class; ``input_key`` names the batch entry the student reads."""

    input_key: str = "logmel"
    min_frames: int = 1  # the shortest input (frames, or samples for waveform students) the network accepts
    stage_dims: tuple[int, ...] = ()
    stage_hops: tuple[int, ...] = ()

    def backbone_parameters(self) -> int:
        """Parameters without the classifier head (the papers' complexity figure)."""
        head = sum(p.numel() for p in self.head.parameters()) if hasattr(self, "head") else 0
        return sum(p.numel() for p in self.parameters()) - head
