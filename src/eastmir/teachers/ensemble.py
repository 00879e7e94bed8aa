"""Teacher ensembles: several teachers as one (``--teacher musicnn+aisfx`` or a config list).

::

    teacher:
      name: ensemble
      members: [{name: musicnn}, {name: aisfx}]
      combine: concat          # or separate
      weights: [0.5, 0.5]      # separate: each member's share of the feature loss

Each member's embeddings are extracted (and stored) on their own; the
ensemble's entry of a clip is their **time-aligned concatenation**: frames
follow the member with the finest frame period, and every other member
contributes, at frame ``t``, its frame covering the same moment (``floor(t ·
p_ref / p_m)``, the last one past its end; a clip-level member repeats its
one vector). ``combine: concat`` regularises the student towards the
concatenation; ``combine: separate`` splits it back into the members' parts
and gives each its own regulariser, weighted by ``weights`` (equal by
default). TeacherLR and KD read the concatenation.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal

import numpy as np

from eastmir.errors import SourceError
from eastmir.registry import TEACHERS
from eastmir.teachers.base import TeacherSource


def align(embeddings: list[np.ndarray], periods: list[float | None]) -> np.ndarray:
    """``(T_m, dim_m)`` per member with frame periods ``periods`` → ``(T, Σ dim_m)`` on the finest member's frames."""
    timed = [(e, p) for e, p in zip(embeddings, periods) if p]
    if timed:
        reference, period = min(timed, key=lambda ep: (ep[1], -ep[0].shape[0]))
        frames = reference.shape[0]
    else:
        frames, period = 1, None
    parts = []
    for e, p in zip(embeddings, periods):
        if not p or not period:
            index = np.zeros(frames, dtype=int)
        else:
            index = np.minimum((np.arange(frames) * period / p).astype(int), e.shape[0] - 1)
        parts.append(e[index])
    return np.concatenate(parts, axis=1)


def _split(member: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A member's ``{name, ...options}`` → ``(name, options)``."""
    options = dict(member)
    return options.pop("name"), options


@TEACHERS.register("ensemble")
class EnsembleTeacher(TeacherSource):
    """Several teachers' embeddings, time-aligned and concatenated (see the module docstring)."""

    name = "ensemble"
    version = "1"
    licence = "each member's"
    source = "its members' (teacher.members)"
    dims = "the sum of its members'"
    period_words = "its finest member's"
    is_ensemble = True

    def __init__(
        self,
        members: list[dict[str, Any]],
        combine: Literal["concat", "separate"] = "concat",
        weights: list[float] | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        if len(members) < 2:
            raise SourceError("an ensemble needs at least two members (teacher.members)")
        if weights is not None and len(weights) != len(members):
            raise SourceError(f"teacher.weights has {len(weights)} values for {len(members)} members")
        self.members = []
        for member in members:
            name, options = _split(member)
            if weights_dir is not None and "weights_dir" in inspect.signature(TEACHERS.get(name)).parameters:
                options.setdefault("weights_dir", weights_dir)
            self.members.append(TEACHERS.build(name, **options))
        self.combine = combine
        self.weights = list(weights) if weights else [1.0] * len(members)
        self.dim = sum(m.dim for m in self.members)
        periods = [m.frame_seconds for m in self.members if m.frame_seconds]
        self.frame_seconds = min(periods) if periods else None

    @classmethod
    def refuses(cls, dataset: str, options: dict[str, Any]) -> str | None:
        """A member's refusal (e.g. musicnn's MTT weights on MagnaTagATune) refuses the ensemble."""
        for member in options.get("members") or []:
            name, member_options = _split(member)
            refusal = TEACHERS.get(name).refuses(dataset, member_options)
            if refusal:
                return f"member {name}: {refusal}"
        return None

    @property
    def parts(self) -> list[int]:
        """Each member's width inside the concatenation, in order."""
        return [m.dim for m in self.members]

    @property
    def label(self) -> str:
        return "+".join(m.label for m in self.members)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "members": [m.identity() for m in self.members], "combine": self.combine}

    def read_source(self, path: Path) -> np.ndarray:  # the pipeline combines the members' stored entries instead
        raise NotImplementedError("an ensemble's entries are made from its members' entries (pipeline.extract)")

    def embed_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return arrays

    def combine_entries(self, entries: list[np.ndarray]) -> np.ndarray:
        """One clip's member entries → its ensemble entry."""
        return align(entries, [m.frame_seconds for m in self.members]).astype(np.float32)


def parse_members(spec: str) -> list[dict[str, Any]]:
    """``"musicnn+aisfx"`` → ``[{"name": "musicnn"}, {"name": "aisfx"}]``."""
    return [{"name": name} for name in spec.split("+") if name]
