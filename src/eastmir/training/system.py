"""The one LightningModule: a student, optional teacher-derived losses, and

    L = (1 − λ)·L_pred + λ·L_reg  (+ L_teacher with embedding compression)
    L_reg = w_feature · mean over stages of d(stage, teacher) + w_kd · KD

built entirely from the run config (so a checkpoint rebuilds itself):

- ``task``: ``multilabel`` (masked BCE; mAP, ROC-AUC, F1) or ``single_label``
  (softmax cross-entropy; accuracy).
- ``student``: ``{name, ...kwargs}`` from :data:`~eastmir.registry.STUDENTS`.
- ``distillation`` (optional)::

      lambda: 0.6                        # λ
      feature:                           # feature-space regulariser (EAsT)
        name: distance_correlation       # | cosine_distance_difference | fitnet
        stages: [-1]                     # final stage, or "all" (weights normalised)
        weight: 1.0                      # w_feature inside L_reg
      kd:                                # classical KD from the TeacherLR head
        weight: 0.3                      # w_kd inside L_reg
        temperature: 2
        hard: false
        teacher_run: "{workdir}/runs/teacher_lr"
      compression: {name: linear}        # embedding compression (second paper)

- ``augment``: ``{mixup_alpha, spec_augment: {freq, time}, fmin_jitter,
  fmax_jitter}``; with a frequency jitter the log-mel is computed per batch
  from cached waveforms (the front end then lives in the system).
- ``optimizer``: ``{name: adam|sgd, lr, weight_decay}``; ``scheduler``:
  ReduceLROnPlateau on the validation loss ``{factor, patience}``.

The validation loss is the prediction loss alone, so it is comparable across
systems (it drives the scheduler and early stopping).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from eastmir.audio import FrontendConfig, LogMelFrontend
from eastmir.config import ConfigError
from eastmir.losses.knowledge_distillation import knowledge_distillation
from eastmir.losses.prediction import cross_entropy, masked_binary_cross_entropy
from eastmir.metrics import MaskedMultilabelMetrics, SingleLabelMetrics
from eastmir.registry import REGULARISERS, STUDENTS
from eastmir.students.base import StudentOutput
from eastmir.students.linear_probe import LinearProbe
from eastmir.training.augment import jittered_range, mixup, spec_augment
from eastmir.training.compression import TRANSFORMS

TASKS = ("multilabel", "single_label")


def resolve_stages(spec: Any, n_stages: int, student: str) -> list[int]:
    """``"all"`` or a list of (possibly negative) stage indices → sorted non-negative indices."""
    if spec == "all":
        return list(range(n_stages))
    if isinstance(spec, int):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise ConfigError(f"distillation.feature.stages must be 'all' or a list of stage indices, got {spec!r}")
    out = []
    for s in spec:
        if not isinstance(s, int) or not -n_stages <= s < n_stages:
            raise ConfigError(
                f"distillation.feature.stages: {student} has {n_stages} stages (0..{n_stages - 1} or -1..-{n_stages}), got {s!r}"
            )
        out.append(s % n_stages)
    return sorted(set(out))


def logmel_per_batch(config: dict) -> bool:
    """A frequency jitter needs the log-mel computed per batch (from waveforms) by the system."""
    aug = config.get("augment") or {}
    return STUDENTS.get(config["student"]["name"]).input_key == "logmel" and bool(
        aug.get("fmin_jitter") or aug.get("fmax_jitter")
    )


def input_key_for(config: dict) -> str:
    """What a run's data module serves: the student's input, or waveforms when the log-mel is made per batch."""
    return "waveform" if logmel_per_batch(config) else STUDENTS.get(config["student"]["name"]).input_key


def load_teacher_head(run_dir: str | Path, num_classes: int, embedding_dim: int) -> LinearProbe:
    """The frozen TeacherLR head of a finished TeacherLR run (its best checkpoint)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise ConfigError(
            f"KD needs a finished TeacherLR run at {run_dir} (no metrics.json there): "
            "train it first, e.g. `eastmir fit --config synth/teacher_lr`"
        )
    blob = json.loads(metrics.read_text())
    if blob.get("student") != "linear_probe":
        raise ConfigError(f"{run_dir} is a {blob.get('student')} run, not a TeacherLR (linear_probe) run")
    state = torch.load(run_dir / blob["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    head = LinearProbe(num_classes, embedding_dim)
    try:
        head.head.load_state_dict({"weight": state["student.head.weight"], "bias": state["student.head.bias"]})
    except RuntimeError as err:
        raise ConfigError(f"{run_dir}: its TeacherLR head does not fit this run ({err})") from err
    head.requires_grad_(False)  # a frozen linear layer: no dropout or BN, so train/eval mode is moot
    return head


class EastSystem(L.LightningModule):
    def __init__(self, config: dict, num_classes: int, embedding_dim: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.task = config.get("task", "multilabel")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        student_cfg = dict(config["student"])
        name = student_cfg.pop("name")
        if name == "linear_probe":
            if embedding_dim is None:
                raise ConfigError("student linear_probe (TeacherLR) needs a teacher: set `teacher:`")
            student_cfg["embedding_dim"] = embedding_dim
        self.student = STUDENTS.build(name, num_classes=num_classes, **student_cfg)

        dist = dict(config.get("distillation") or {})
        unknown = set(dist) - {"lambda", "feature", "kd", "compression"}
        if unknown:
            raise ConfigError(f"distillation: unknown keys {sorted(unknown)}; valid: lambda, feature, kd, compression")
        self.lam = float(dist.get("lambda", 0.0))
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"distillation.lambda (λ) must lie in [0, 1], got {self.lam}")
        if (dist.get("feature") or dist.get("kd")) and embedding_dim is None:
            raise ConfigError("distillation needs teacher embeddings: set `teacher:`")
        if dist.get("compression") and not dist.get("feature"):
            raise ConfigError(
                "distillation.compression needs distillation.feature (the distance to the compact embedding)"
            )

        self.stages: list[int] = []
        self.regularisers = nn.ModuleList()
        self.transforms = nn.ModuleList()
        self.feature_weight = 0.0
        if dist.get("feature"):
            feature = dict(dist["feature"])
            self.feature_weight = float(feature.pop("weight", 1.0))
            self.stages = resolve_stages(feature.pop("stages", [-1]), len(self.student.stage_dims), name)
            reg_name = feature.pop("name")
            compression = dict(dist.get("compression") or {})
            kind = compression.get("name", "linear")
            if compression and kind not in TRANSFORMS:
                raise ConfigError(f"unknown compression {kind!r}; valid: {', '.join(TRANSFORMS)}")
            for s in self.stages:
                width = self.student.stage_dims[s]
                if compression:
                    self.transforms.append(TRANSFORMS[kind](embedding_dim, width, num_classes))
                target_dim = width if compression else embedding_dim
                self.regularisers.append(
                    REGULARISERS.build(reg_name, student_dim=width, teacher_dim=target_dim, **feature)
                )

        self.kd: dict[str, Any] | None = None
        self.teacher_head: LinearProbe | None = None
        if dist.get("kd"):
            kd = dict(dist["kd"])
            if "teacher_run" not in kd:
                raise ConfigError("distillation.kd needs teacher_run: a finished TeacherLR run directory")
            self.kd = {
                "weight": float(kd.get("weight", 1.0)),
                "temperature": float(kd.get("temperature", 2.0)),
                "hard": bool(kd.get("hard", False)),
            }
            self.teacher_head = load_teacher_head(kd["teacher_run"], num_classes, embedding_dim)

        aug = config.get("augment") or {}
        self.mixup_alpha = float(aug.get("mixup_alpha", 0.0))
        self.spec_augment = aug.get("spec_augment")
        self.jitter = (float(aug.get("fmin_jitter", 0.0)), float(aug.get("fmax_jitter", 0.0)))
        self.frontend = None
        if logmel_per_batch(config):
            self.frontend = LogMelFrontend(FrontendConfig(**config.get("frontend", {})))

        def metrics():
            return MaskedMultilabelMetrics() if self.task == "multilabel" else SingleLabelMetrics(num_classes)

        self.val_metrics, self.test_metrics = metrics(), metrics()

    @property
    def input_key(self) -> str:
        """What the data module must serve (:func:`input_key_for`)."""
        return input_key_for(self.config)

    def with_logmel(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Compute the log-mel from ``batch["waveform"]`` when the front end runs per batch (jittered in training)."""
        if self.frontend is None or "logmel" in batch:
            return batch
        c = self.frontend.config
        fmin = fmax = None
        if train:
            fmin, fmax = jittered_range(c.fmin, c.fmax, *self.jitter, nyquist=c.sample_rate / 2)
        rest = {k: v for k, v in batch.items() if k != "waveform"}
        return dict(rest, logmel=self.frontend(batch["waveform"], fmin, fmax))

    @property
    def monitor(self) -> str:
        """The validation metric that picks the best checkpoint."""
        return "val_mAP" if self.task == "multilabel" else "val_accuracy"

    def forward(self, x: torch.Tensor):
        """The student on its own input (a log-mel for log-mel students)."""
        return self.student(x)

    def prediction_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.task == "multilabel":
            return masked_binary_cross_entropy(logits, batch["targets"], batch["mask"])
        return cross_entropy(logits, batch["targets"])

    def distillation_terms(self, out: StudentOutput, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teacher-side terms for a student output: ``feature`` (mean over the
        regularised stages), ``teacher`` (``L_teacher`` of the compression) and ``kd``;
        only those the config asks for."""
        terms: dict[str, torch.Tensor] = {}
        if self.regularisers:
            feature, teacher_loss = out.logits.new_zeros(()), out.logits.new_zeros(())
            for i, (s, regulariser) in enumerate(zip(self.stages, self.regularisers, strict=True)):
                target = batch["embedding"]
                if len(self.transforms):
                    compact, teacher_logits = self.transforms[i](target)
                    teacher_loss = teacher_loss + self.prediction_loss(teacher_logits, batch)
                    target = compact.detach()  # the distance loss never updates the transformation
                feature = feature + regulariser(out.stages[s], target)
            terms["feature"] = feature / len(self.stages)
            if len(self.transforms):
                terms["teacher"] = teacher_loss / len(self.stages)
        if self.kd is not None:
            with torch.no_grad():
                teacher_logits = self.teacher_head(batch["embedding"]).logits
            terms["kd"] = knowledge_distillation(
                out.logits,
                teacher_logits,
                batch["mask"],
                self.kd["temperature"],
                single_label=self.task == "single_label",
                hard=self.kd["hard"],
            )
        return terms

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every loss term of one batch: ``pred``, ``reg``, ``feature``, ``kd``, ``teacher``, ``loss``."""
        batch = self.with_logmel(batch, train=self.training)
        out = self.student(batch[self.student.input_key])
        pred = self.prediction_loss(out.logits, batch)
        terms: dict[str, torch.Tensor] = {"pred": pred, **self.distillation_terms(out, batch)}
        reg = pred.new_zeros(())
        if "feature" in terms:
            reg = reg + self.feature_weight * terms["feature"]
        if "kd" in terms:
            reg = reg + self.kd["weight"] * terms["kd"]
        loss = pred
        if self.regularisers or self.kd is not None:
            terms["reg"] = reg
            loss = (1.0 - self.lam) * pred + self.lam * reg
        if "teacher" in terms:
            loss = loss + terms["teacher"]
        terms["loss"] = loss
        return terms

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = self.with_logmel(batch, train=True)
        if self.mixup_alpha > 0:
            batch = mixup(batch, self.mixup_alpha)
        if self.spec_augment and "logmel" in batch:
            batch = dict(
                batch,
                logmel=spec_augment(
                    batch["logmel"], self.spec_augment.get("freq", 0), self.spec_augment.get("time", 0)
                ),
            )
        terms = self.losses(batch)
        n = batch["targets"].shape[0]
        for key in ("loss", "reg", "kd", "teacher"):
            if key in terms:
                self.log(f"train_{key}", terms[key], prog_bar=key in ("loss", "reg"), on_epoch=True, batch_size=n)
        return terms["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.student(self.with_logmel(batch, train=False)[self.student.input_key])
        self.log(
            "val_loss",
            self.prediction_loss(out.logits, batch),
            prog_bar=True,
            batch_size=batch["targets"].shape[0],
            sync_dist=True,
        )
        self.val_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_validation_epoch_end(self) -> None:
        for k, v in self.val_metrics.compute().items():
            self.log(f"val_{k}", v, prog_bar=k in ("mAP", "accuracy"))
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.student(self.with_logmel(batch, train=False)[self.student.input_key])
        self.test_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_test_epoch_end(self) -> None:
        for k, v in self.test_metrics.compute().items():
            self.log(f"test_{k}", v)
        self.test_metrics.reset()

    def configure_optimizers(self):
        opt_cfg = dict(self.config.get("optimizer", {}))
        name = opt_cfg.pop("name", "adam")
        params = [p for p in self.parameters() if p.requires_grad]  # student, projections, transforms
        if name == "adam":
            opt = torch.optim.Adam(params, lr=opt_cfg.get("lr", 1e-4), weight_decay=opt_cfg.get("weight_decay", 0.0))
        elif name == "sgd":
            opt = torch.optim.SGD(
                params,
                lr=opt_cfg.get("lr", 0.1),
                momentum=opt_cfg.get("momentum", 0.0),
                weight_decay=opt_cfg.get("weight_decay", 0.0),
            )
        else:
            raise ConfigError(f"unknown optimizer {name!r}; valid: adam, sgd")
        sched_cfg = self.config.get("scheduler", {})
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=sched_cfg.get("factor", 0.2), patience=sched_cfg.get("patience", 5)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
