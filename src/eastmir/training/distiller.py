"""The teacher's side of a run's loss: what pulls the student towards a frozen teacher, and how hard.

::

    L      = (1 − λ)·L_pred + λ·L_reg  (+ L_teacher with embedding compression)
    L_reg  = w_feature · (1/|S|) Σ_s Σ_p w_p · d(stage_s, teacher_p) + w_kd · KD

:class:`Distiller` owns every term and its weight, the way torchdistill's
loss wrappers own a weighted sum: one feature regulariser ``d`` (distance
correlation, cosine-distance difference, FitNet) per regularised student
stage ``s`` and teacher part ``p`` (the whole embedding, or each member of an
ensemble kept ``separate``, weighted ``w_p``), the trainable compression of
the teacher's embedding (second paper; it adds ``L_teacher``, the compressed
embedding's own prediction loss), the time alignment of each stage with the
teacher's frames, and the frozen KD head copied from a TeacherLR run.
:class:`~eastmir.training.system.EastSystem` is the student, this, and the
optimisation.

Checkpoints written before the distiller existed keep these modules at the
system's top level (``regularisers.*``, ``transforms.*``, ``teacher_head.*``);
:func:`move_distiller_keys` reads them under ``distiller.``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from eastmir.config import RunConfig
from eastmir.errors import TrainingError
from eastmir.losses.alignment import align_by_factors, period_factors
from eastmir.losses.knowledge_distillation import knowledge_distillation
from eastmir.registry import COMPRESSIONS, REGULARISERS
from eastmir.students.base import Student, StudentOutput
from eastmir.students.linear_probe import LinearProbe

MOVED = ("regularisers.", "transforms.", "teacher_head.")  # top-level keys of checkpoints before the distiller


def resolve_stages(spec: Any, n_stages: int) -> list[int]:
    """``"all"``, an index or a list of (possibly negative) indices → sorted non-negative indices."""
    if spec == "all":
        return list(range(n_stages))
    spec = [spec] if isinstance(spec, int) else spec
    return sorted({s % n_stages for s in spec})


class Distiller(nn.Module):
    """Every teacher-side term of the loss of one run, with its weight (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        student: Student,
        num_classes: int,
        embedding_dim: int | None,
        embedding_parts: list[int] | None = None,
        embedding_period: float | None = None,
        clip_seconds: float | None = None,
    ) -> None:
        """``student``: the student whose stages are regularised (its ``stage_dims``, ``stage_seconds``);
        ``embedding_parts``: an ensemble's member widths when each keeps its own regulariser;
        ``embedding_period``: the teacher's frame period in seconds (``None``: one vector per clip)."""
        super().__init__()
        self.lam = config.lam
        if (config.feature or config.kd) and embedding_dim is None:
            raise TrainingError("distillation needs the teacher's embedding width (embedding_dim)")
        self.stages: list[int] = []
        self.align_factors: dict[int, tuple[int, int]] = {}  # stage → (k_student, k_teacher); empty: ceil rule
        self.regularisers = nn.ModuleList()
        self.transforms = nn.ModuleList()
        self.feature_weight = 0.0
        # (stage, slice of the embedding, weight) per regulariser: one target, or one per ensemble member
        self.targets: list[tuple[int, slice, float]] = []
        if config.feature:
            self._feature_terms(config, student, num_classes, embedding_dim, embedding_parts)
            self.align_factors = self._align_factors(config, student, embedding_period, clip_seconds)
        self.kd: dict[str, Any] | None = None
        self.teacher_head: LinearProbe | None = None
        if config.kd:
            kd = config.kd
            self.kd = {"weight": kd.weight, "temperature": kd.temperature, "hard": kd.hard}
            self.teacher_head = LinearProbe(num_classes, embedding_dim)
            self.teacher_head.requires_grad_(False)  # frozen; a linear layer, so train/eval mode is moot

    def _feature_terms(
        self, config: RunConfig, student: Student, num_classes: int, embedding_dim: int, parts: list[int] | None
    ) -> None:
        """One regulariser (and compression) per regularised stage and teacher part."""
        feature, compression = config.feature, config.compression
        self.feature_weight = feature.weight
        self.stages = resolve_stages(feature.stages, len(student.stage_dims))
        for s in self.stages:
            width = student.stage_dims[s]
            for part, weight in _parts(config, embedding_dim, parts):
                part_dim = part.stop - part.start
                if compression:
                    self.transforms.append(
                        COMPRESSIONS.build(
                            compression.name, teacher_dim=part_dim, student_dim=width, num_classes=num_classes
                        )
                    )
                target_dim = width if compression else part_dim
                self.regularisers.append(
                    REGULARISERS.build(feature.name, student_dim=width, teacher_dim=target_dim, **feature.options)
                )
                self.targets.append((s, part, weight))

    def _align_factors(
        self, config: RunConfig, student: Student, period: float | None, clip_seconds: float | None
    ) -> dict[int, tuple[int, int]]:
        """Each regularised stage's repeat factors (:mod:`eastmir.losses.alignment`); empty for ``align: ceil``."""
        align = config.feature.align
        if align == "ceil":
            return {}
        if isinstance(align, list):
            return dict.fromkeys(self.stages, (align[0], align[1]))
        seconds = student.stage_seconds(config.frontend)
        clip = clip_seconds or config.data.clip_seconds or 10.0
        return {s: period_factors(seconds[s], period, clip) for s in self.stages}

    @property
    def active(self) -> bool:
        """Whether the run has a teacher-side term at all (else its loss is the prediction loss)."""
        return bool(self.regularisers) or self.kd is not None

    def set_teacher_head(self, state: dict[str, torch.Tensor], source: str = "the TeacherLR run") -> None:
        """Copy the frozen KD head's ``weight`` / ``bias`` in (from a finished TeacherLR run)."""
        if self.teacher_head is None:
            raise TrainingError("this system has no KD head (no distillation.kd)")
        try:
            self.teacher_head.head.load_state_dict(state)
        except RuntimeError as err:
            raise TrainingError(f"{source}: its TeacherLR head does not fit this run ({err})") from err

    def terms(
        self,
        out: StudentOutput,
        batch: dict[str, Any],
        prediction_loss: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor],
        global_batch: Callable[[torch.Tensor, bool], torch.Tensor],
        single_label: bool,
    ) -> dict[str, torch.Tensor]:
        """The teacher-side terms of a student output: ``feature`` (mean over the regularised stages),
        ``teacher`` (``L_teacher`` of the compression) and ``kd``; only those the config asks for.
        ``global_batch(x, with_grad)`` stacks ``x (batch, ...)`` over every process (the batch-wide
        regularisers compare every pair of clips)."""
        terms: dict[str, torch.Tensor] = {}
        if self.regularisers:
            feature, teacher_loss = out.logits.new_zeros(()), out.logits.new_zeros(())
            for i, ((s, part, weight), regulariser) in enumerate(zip(self.targets, self.regularisers, strict=True)):
                target = batch["embedding"][..., part]
                if len(self.transforms):
                    compact, teacher_logits = self.transforms[i](target)
                    teacher_loss = teacher_loss + weight * prediction_loss(teacher_logits, batch)
                    target = compact.detach()  # the distance loss never updates the transformation
                stage = out.stages[s]
                if s in self.align_factors:
                    stage, target = align_by_factors(stage, target, self.align_factors[s])
                feature = feature + weight * regulariser(global_batch(stage, True), global_batch(target, False))
            terms["feature"] = feature / len(self.stages)
            if len(self.transforms):
                terms["teacher"] = teacher_loss / len(self.stages)
        if self.kd is not None:
            with torch.no_grad():
                teacher_logits = self.teacher_head(batch["embedding"]).logits
            kd = self.kd
            terms["kd"] = knowledge_distillation(
                out.logits, teacher_logits, batch["mask"], kd["temperature"], single_label=single_label, hard=kd["hard"]
            )
        return terms

    def combine(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``terms`` (``pred`` and the teacher-side ones) with ``reg`` and the total ``loss`` added."""
        pred = terms["pred"]
        loss = pred
        if self.active:
            reg = pred.new_zeros(())
            if "feature" in terms:
                reg = reg + self.feature_weight * terms["feature"]
            if "kd" in terms:
                reg = reg + self.kd["weight"] * terms["kd"]
            terms["reg"] = reg
            loss = (1.0 - self.lam) * pred + self.lam * reg
        if "teacher" in terms:
            loss = loss + terms["teacher"]
        terms["loss"] = loss
        return terms


def _parts(config: RunConfig, embedding_dim: int | None, parts: list[int] | None) -> list[tuple[slice, float]]:
    """The embedding's slices and their weights (summing to 1): the whole, or each ensemble member's."""
    if not parts:
        return [(slice(0, embedding_dim), 1.0)]
    if sum(parts) != embedding_dim:
        raise TrainingError(f"ensemble parts {parts} do not add up to the embedding width {embedding_dim}")
    weights = (config.teacher.options.get("weights") if config.teacher else None) or [1.0] * len(parts)
    total = float(sum(weights))
    edges = np.cumsum([0, *parts])
    return [(slice(int(a), int(b)), w / total) for a, b, w in zip(edges[:-1], edges[1:], weights)]


def move_distiller_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """A ``load_state_dict`` pre-hook of the system: a checkpoint from before the distiller keeps its
    regularisers, compressions and KD head at the top level; read them under ``distiller.``."""
    for key in [k for k in state_dict if k.startswith(tuple(prefix + m for m in MOVED))]:
        state_dict[f"{prefix}distiller.{key[len(prefix) :]}"] = state_dict.pop(key)
