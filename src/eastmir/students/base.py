"""The Student contract.

``forward(x) -> StudentOutput(logits (batch, classes) pre-sigmoid,
stages: list of (batch, T_k, C_k))``. ``stage_dims[k]`` is ``C_k`` and
``stage_hops[k]`` the number of input frames per stage-``k`` frame (so the
stage's frame period is ``stage_hops[k] × front-end hop``). Probabilities
are made only in metrics and inference, never inside ``forward``.

A student declares what the rest of eastmir asks of it as class attributes
(``input_key``, ``min_frames``, ``is_probe``, ``complexity_options``,
``complexity_frontend``, ``table2_options``): adding one is its file plus its registration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from eastmir.frontend import FrontendConfig
from eastmir.inputs import InputKind


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (batch, classes), before the sigmoid / softmax
    stages: list[torch.Tensor]  # each (batch, time, channels)


Rename = tuple[str, "str | Callable[[re.Match], str]"]


def _renamed(key: str, rules: tuple[Rename, ...]) -> str:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            if callable(replacement):
                return replacement(match) + key[match.end() :]
            numbers = [int(g) - 1 if g and g.isdigit() else g for g in match.groups()]
            return replacement.format(None, *numbers) + key[match.end() :]
    return key


class Student(nn.Module):
    """Base class; ``input_key`` names the batch entry the student reads."""

    input_key: InputKind = InputKind.LOGMEL
    min_frames: int = 1  # the shortest input (frames, or samples for waveform students) the network accepts
    stage_dims: tuple[int, ...] = ()
    stage_hops: tuple[int, ...] = ()
    # capabilities (what the pipeline asks of a student instead of its name):
    is_probe: bool = False  # reads the teacher's embedding itself (TeacherLR): no distillation, no front end
    # `eastmir complexity` builds it with these options and front end (None: it reads the waveform itself)
    complexity_options: ClassVar[dict[str, Any]] = {}
    complexity_frontend: ClassVar[FrontendConfig | None] = FrontendConfig()
    # the paper's Table 2 times it alone on a 128 × 1000 log-mel with these options (None: not in Table 2)
    table2_options: ClassVar[dict[str, Any] | None] = None
    # the authors' parameter names → ours: (regex, replacement) pairs tried in order; in a replacement,
    # {1}, {2} … are the regex's groups as numbers minus one (their layers count from 1, ours from 0); a
    # replacement may also be a function of the match
    authors_keys: ClassVar[tuple[Rename, ...]] = ()
    # options added after runs were saved without them, with the value that does what those runs did: a run
    # started before resumes under the new option at this value (eastmir.rundir's fingerprint check)
    added_options: ClassVar[dict[str, Any]] = {}

    def stage_seconds(self, frontend: FrontendConfig) -> tuple[float, ...]:
        """Each stage's frame period in seconds, for a log-mel student ``stage_hops × frontend hop``."""
        return tuple(h * frontend.hop_length / frontend.sample_rate for h in self.stage_hops)

    def authors_state_dict(self, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """The authors' ``state`` of this student (their module's ``state_dict``, without a ``student.``
        prefix) under our parameter names, every key renamed by :attr:`authors_keys` and every shape checked:
        a key left over or missing, or a shape that differs, is a one-line :class:`ValueError` naming it."""
        ours = self.state_dict()
        renamed: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            name = _renamed(key, self.authors_keys)
            if name not in ours:
                raise ValueError(f"{source}: {key} (as {name}) is not a parameter of {type(self).__name__}")
            if tuple(value.shape) != tuple(ours[name].shape):
                raise ValueError(
                    f"{source}: {key} has shape {tuple(value.shape)}, {type(self).__name__}'s {name} "
                    f"{tuple(ours[name].shape)}; is it another configuration of the student?"
                )
            renamed[name] = value
        missing = sorted(set(ours) - set(renamed))
        if missing:
            raise ValueError(f"{source}: no value for {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
        return renamed

    def backbone_parameters(self) -> int:
        """Parameters without the classifier head (the papers' complexity figure)."""
        head = sum(p.numel() for p in self.head.parameters()) if hasattr(self, "head") else 0
        return sum(p.numel() for p in self.parameters()) - head
