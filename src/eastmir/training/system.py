"""The one LightningModule: a student, an optional feature-space regulariser
towards the teacher embedding, and ``L = (1 − λ)·L_pred + λ·L_reg``.

Built entirely from the run config (so a checkpoint rebuilds itself):

- ``student``: ``{name, ...kwargs}`` from :data:`~eastmir.registry.STUDENTS`.
- ``regulariser``: ``null`` or ``{name, weight (λ), stages}``; ``stages`` is a
  list of stage indices (``[-1]`` = final, EAsT_Final) or ``"all"``
  (EAsT_All); the stage weights are normalised to sum to 1.
- ``optimizer``: ``{name: adam|sgd, lr, weight_decay}``; ``scheduler``:
  ReduceLROnPlateau on the validation loss ``{factor, patience}``.

The validation loss is the prediction loss alone, so it is comparable across
systems (it drives the scheduler and early stopping).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from eastmir.config import ConfigError
from eastmir.losses.prediction import masked_binary_cross_entropy
from eastmir.metrics import MaskedMultilabelMetrics
from eastmir.registry import REGULARISERS, STUDENTS


def resolve_stages(spec: Any, n_stages: int, student: str) -> list[int]:
    """``"all"`` or a list of (possibly negative) stage indices → sorted non-negative indices."""
    if spec == "all":
        return list(range(n_stages))
    if isinstance(spec, int):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise ConfigError(f"regulariser.stages must be 'all' or a list of stage indices, got {spec!r}")
    out = []
    for s in spec:
        if not isinstance(s, int) or not -n_stages <= s < n_stages:
            raise ConfigError(f"regulariser.stages: {student} has {n_stages} stages (0..{n_stages - 1} or -1..-{n_stages}), got {s!r}")
        out.append(s % n_stages)
    return sorted(set(out))


class EastSystem(L.LightningModule):
    def __init__(self, config: dict, num_classes: int, embedding_dim: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        student_cfg = dict(config["student"])
        name = student_cfg.pop("name")
        if name == "linear_probe":
            if embedding_dim is None:
                raise ConfigError("student linear_probe (TeacherLR) needs a teacher: set `teacher:`")
            student_cfg["embedding_dim"] = embedding_dim
        self.student = STUDENTS.build(name, num_classes=num_classes, **student_cfg)
        reg_cfg = config.get("regulariser")
        self.lam = 0.0
        self.regulariser = None
        self.reg_stages: list[int] = []
        if reg_cfg:
            if embedding_dim is None:
                raise ConfigError("a regulariser needs teacher embeddings: set `teacher:`")
            reg_cfg = dict(reg_cfg)
            self.lam = float(reg_cfg.pop("weight"))
            if not 0.0 <= self.lam <= 1.0:
                raise ConfigError(f"regulariser.weight (λ) must lie in [0, 1], got {self.lam}")
            self.reg_stages = resolve_stages(reg_cfg.pop("stages", [-1]), len(self.student.stage_dims), name)
            self.regulariser = REGULARISERS.build(reg_cfg.pop("name"), **reg_cfg)
        self.val_metrics = MaskedMultilabelMetrics()
        self.test_metrics = MaskedMultilabelMetrics()

    @property
    def input_key(self) -> str:
        return self.student.input_key

    def forward(self, x: torch.Tensor):
        return self.student(x)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.student(batch[self.input_key])
        pred = masked_binary_cross_entropy(out.logits, batch["targets"], batch["mask"])
        losses = {"pred": pred, "logits": out.logits}
        if self.regulariser is not None:
            reg = sum(self.regulariser(out.stages[s], batch["embedding"]) for s in self.reg_stages) / len(self.reg_stages)
            losses["reg"] = reg
            losses["loss"] = (1.0 - self.lam) * pred + self.lam * reg
        else:
            losses["loss"] = pred
        return losses

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        n = batch["targets"].shape[0]
        self.log("train_loss", losses["loss"], prog_bar=True, on_epoch=True, batch_size=n)
        if "reg" in losses:
            self.log("train_reg", losses["reg"], prog_bar=True, on_epoch=True, batch_size=n)
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.student(batch[self.input_key])
        loss = masked_binary_cross_entropy(out.logits, batch["targets"], batch["mask"])
        self.log("val_loss", loss, prog_bar=True, batch_size=batch["targets"].shape[0], sync_dist=True)
        self.val_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_validation_epoch_end(self) -> None:
        for k, v in self.val_metrics.compute().items():
            self.log(f"val_{k}", v, prog_bar=k == "mAP")
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.student(batch[self.input_key])
        self.test_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_test_epoch_end(self) -> None:
        for k, v in self.test_metrics.compute().items():
            self.log(f"test_{k}", v)
        self.test_metrics.reset()

    def configure_optimizers(self):
        opt_cfg = dict(self.config.get("optimizer", {}))
        name = opt_cfg.pop("name", "adam")
        params = self.student.parameters()
        if name == "adam":
            opt = torch.optim.Adam(params, lr=opt_cfg.get("lr", 1e-4), weight_decay=opt_cfg.get("weight_decay", 0.0))
        elif name == "sgd":
            opt = torch.optim.SGD(params, lr=opt_cfg.get("lr", 0.1), momentum=opt_cfg.get("momentum", 0.0), weight_decay=opt_cfg.get("weight_decay", 0.0))
        else:
            raise ConfigError(f"unknown optimizer {name!r}; valid: adam, sgd")
        sched_cfg = self.config.get("scheduler", {})
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=sched_cfg.get("factor", 0.2), patience=sched_cfg.get("patience", 5)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
