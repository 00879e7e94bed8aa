"""The one LightningModule: the student, its :class:`~eastmir.training.distiller.Distiller` (every
teacher-side term of the loss and its weight) and the optimisation:

    L = (1 − λ)·L_pred + λ·L_reg  (+ L_teacher with embedding compression)
    L_reg = w_feature · mean over stages of d(stage, teacher) + w_kd · KD

built entirely from the validated run config (:class:`eastmir.config.RunConfig`), the
number of classes, the teacher's embedding width and the class names, which
are its hyper-parameters: a checkpoint rebuilds the system without reading
any other file (``eastmir.load_run``).

- ``task``: ``multilabel`` (masked BCE; mAP, ROC-AUC, F1) or ``single_label``
  (softmax cross-entropy; accuracy).
- ``student``: ``{name, ...options}`` from :data:`~eastmir.registry.STUDENTS`.
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

  The KD head is a frozen linear probe whose weights the pipeline copies in
  from ``teacher_run`` before training (:meth:`EastSystem.set_teacher_head`);
  from then on they live in this module's checkpoints (``distiller.*``).
- ``augment``: ``{mixup_alpha, spec_augment: {freq, time}, fmin_jitter,
  fmax_jitter}``; with a frequency jitter the log-mel is computed per batch
  from cached waveforms (the front end then lives in the system).
- ``optimizer``: ``{name: adam|sgd, lr, weight_decay, momentum}``;
  ``scheduler``: ReduceLROnPlateau on the validation loss ``{factor, patience}``.

The validation loss (it drives the scheduler and early stopping) is the
prediction loss alone, or with ``trainer.validation_loss: total`` the total
loss, as the authors'. A non-finite training
loss stops training with the step and the clip ids of the batch.

Several processes (DDP) compute the step of one process on the global batch:
the batch-wide regularisers (distance correlation and the cosine-distance
difference compare every pair of clips) see the features of all processes,
gathered with their gradients; the losses averaged over labelled entries are
weighted by each process's share of them, so DDP's gradient average is the
global batch's gradient; BatchNorm is synchronised (the trainer) and the
validation loss and metrics gather every clip (torchmetrics). What differs is
randomness drawn per process (dropout, mixup, SpecAugment, jitter): each
process draws its own, so with those a DDP run is a different, equally valid
sample, not the same numbers.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from eastmir.config import RunConfig, migrate, validate_config
from eastmir.data.clips import RunData
from eastmir.errors import ConfigError, RunError, TrainingError
from eastmir.frontend import LogMelFrontend
from eastmir.inputs import InputKind
from eastmir.losses.prediction import cross_entropy, masked_binary_cross_entropy
from eastmir.metrics import MaskedMultilabelMetrics, SingleLabelMetrics
from eastmir.registry import OPTIMISERS, SCHEDULERS, STUDENTS
from eastmir.students.base import Student, StudentOutput
from eastmir.training.augment import jittered_ranges, mixup, spec_augment
from eastmir.training.checkpoints import KD_REFUSAL, TeacherHead
from eastmir.training.distiller import Distiller, move_distiller_keys


class EastSystem(L.LightningModule):
    def __init__(
        self,
        config: RunConfig | dict,
        num_classes: int,
        embedding_dim: int | None = None,
        classes: list[str] | None = None,
        clip_seconds: float | None = None,
        embedding_parts: list[int] | None = None,
        embedding_period: float | None = None,
    ) -> None:
        """``config``: the run's :class:`~eastmir.config.RunConfig` (a plain mapping when a checkpoint is
        loaded: migrated and validated here); ``clip_seconds``: the clip length the run trains on
        (prediction windows take it); ``embedding_parts``: the widths of an ensemble's members whose
        regularisers are separate; ``embedding_period``: the teacher's frame period in seconds (None: one
        vector per clip), which time alignment by periods needs."""
        super().__init__()
        if not isinstance(config, RunConfig):  # the checkpoint edge: hyper-parameters are plain values
            config = validate_config(migrate(config, "the checkpoint's config"), "the checkpoint's config")
        self.save_hyperparameters(
            {
                "config": config.to_dict(),
                "num_classes": num_classes,
                "embedding_dim": embedding_dim,
                "classes": list(classes) if classes else [f"class{i}" for i in range(num_classes)],
                "clip_seconds": clip_seconds,
                "embedding_parts": embedding_parts,
                "embedding_period": embedding_period,
            }
        )
        self.config = config
        self.classes = self.hparams["classes"]
        self.task = config.task_kind
        self.student = _student(config, num_classes, embedding_dim)

        self.distiller = Distiller(
            config, self.student, num_classes, embedding_dim, embedding_parts, embedding_period, clip_seconds
        )
        self.register_load_state_dict_pre_hook(move_distiller_keys)  # checkpoints from before the distiller

        aug = config.augmentation
        self.mixup_alpha = aug.mixup_alpha
        self.spec_augment = aug.spec_augment
        self.jitter = (aug.fmin_jitter, aug.fmax_jitter)
        self.authors_augment = aug.style == "authors"
        front = config.frontend
        self.mask_fill = front.norm_shift / front.norm_scale if self.authors_augment else 0.0  # log 0, normalised
        self.frontend = None
        if self.input_key is InputKind.WAVEFORM and self.student.input_key.reads_logmel:
            self.frontend = LogMelFrontend(config.frontend)

        self.val_metrics, self.test_metrics = _metrics(self.task, num_classes), _metrics(self.task, num_classes, True)
        self.validation_loss = config.trainer.validation_loss  # what val_loss (LR plateau, early stop) is
        self.val_loss = MeanMetric()  # weighted by clips, gathered over processes

    @classmethod
    def for_run(cls, config: RunConfig, data: RunData, teacher_head: TeacherHead | None) -> EastSystem:
        """The system of a run training on ``data``, with the KD head of its TeacherLR run copied in."""
        system = cls(
            config,
            len(data.classes),
            embedding_dim=data.embedding_dim,
            classes=data.classes,
            clip_seconds=data.clip_seconds,
            embedding_parts=_separate_parts(config, data),
            embedding_period=data.embedding_period,
        )
        if teacher_head is not None:
            system.set_teacher_head(teacher_head)
        return system

    def set_teacher_head(self, head: TeacherHead) -> None:
        """Copy the frozen KD head's ``weight`` / ``bias`` in (from a finished TeacherLR run); a head whose
        classes are not this run's, in this order, is refused in one line naming both runs."""
        if head.classes and self.classes and list(head.classes) != list(self.classes):
            shown = [", ".join(c[:4]) + (", …" if len(c) > 4 else "") for c in (head.classes, self.classes)]
            difference = f"has other classes or another order ({shown[0]}, not {shown[1]})"
            raise RunError(KD_REFUSAL.format(name=self.config.name, path=head.run, difference=difference))
        self.distiller.set_teacher_head(head.state, str(head.run))

    @property
    def input_key(self) -> str:
        """What the data module must serve (:attr:`~eastmir.config.RunConfig.input_key`)."""
        return self.config.input_key

    def with_logmel(self, batch: dict[str, Any], train: bool) -> dict[str, Any]:
        """``batch`` with ``logmel (batch, mels, frames)`` computed from ``waveform (batch, samples)`` when the
        front end runs per batch (jittered in training); a training batch's partners (``batch["partner"]``, the
        mixup clips the data module serves) go through the same front-end call. One STFT and one batched mel
        product for all of them: each clip's own filterbank range (the authors' jitter) is a batched product,
        not a loop over the clips."""
        if self.frontend is None:
            return batch
        partner = batch.get("partner")
        logmel, waveform = InputKind.LOGMEL, InputKind.WAVEFORM
        groups = [g for g in (batch, partner) if isinstance(g, dict) and logmel not in g and waveform in g]
        if not groups:
            return batch
        wave = torch.cat([g[waveform] for g in groups]) if len(groups) > 1 else groups[0][waveform]
        ranges = self._jittered_ranges([len(g[waveform]) for g in groups], wave.device) if train else None
        computed = self.frontend(wave, *ranges) if ranges else self.frontend(wave)
        done = [
            dict({k: v for k, v in g.items() if k != waveform}, logmel=part)
            for g, part in zip(groups, computed.split([len(g[waveform]) for g in groups]))
        ]
        if partner is not None and len(done) > 1:
            return dict(done[0], partner=done[1])
        if partner is not None and logmel in batch:  # only the partner needed it
            return dict(batch, partner=done[0])
        return done[0]

    def _jittered_ranges(self, sizes: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Filterbank ranges ``(fmin (clips,), fmax (clips,))`` for groups of ``sizes`` clips, or ``None`` without
        a jitter: the authors' style draws one range per clip (fmin only up, fmax only down), eastmir's one
        ± range per group (the batch, its partners)."""
        if not any(self.jitter):
            return None
        c = self.frontend.config
        if self.authors_augment:
            lo, hi = jittered_ranges(sum(sizes), c.fmin, c.fmax, *self.jitter, c.sample_rate / 2, inward=True)
        else:
            lo, hi = jittered_ranges(len(sizes), c.fmin, c.fmax, *self.jitter, c.sample_rate / 2)
            repeats = torch.tensor(sizes)
            lo, hi = lo.repeat_interleave(repeats), hi.repeat_interleave(repeats)
        return lo.to(device, non_blocking=True), hi.to(device, non_blocking=True)

    def compile_student(self, mode: str = "default", backend: str = "inductor") -> None:
        """Compile the student with ``torch.compile`` in place (``nn.Module.compile``: its parameters and state
        dict keys stay as they are, so checkpoints load either way). ``mode``: inductor's; another ``backend``
        (``aot_eager``) only for tests. The compiled forward and backward compute the eager step's values up to
        float rounding (a test compares the losses and gradients)."""
        options = {"mode": mode} if backend == "inductor" else {}
        self.student.compile(backend=backend, **options)

    @property
    def monitor(self) -> str:
        """The validation metric that picks the best checkpoint."""
        return "val_mAP" if self.task == "multilabel" else "val_accuracy"

    def forward(self, x: torch.Tensor) -> StudentOutput:
        """The student on its own input (a log-mel for log-mel students)."""
        return self.student(x)

    def setup(self, stage: str) -> None:
        """With several processes, BatchNorm statistics over the global batch (before DDP wraps the model); for
        training, the student compiled when ``trainer.compile`` asks."""
        if stage == "fit" and self.config.trainer.compile != "off":
            self.compile_student(self.config.trainer.compile)
        if self._world() > 1:
            from eastmir.training.batchnorm import synchronise_batchnorm

            synchronise_batchnorm(self.student, self.trainer.strategy.root_device.type)

    def _world(self) -> int:
        """How many processes train together (1 outside a trainer)."""
        trainer = getattr(self, "_trainer", None)
        return trainer.world_size if trainer is not None else 1

    def _global_batch(self, x: torch.Tensor, with_grad: bool) -> torch.Tensor:
        """``x (batch, ...)`` of every process stacked along the batch, ``(world · batch, ...)``."""
        if self._world() == 1:
            return x
        return self.all_gather(x, sync_grads=with_grad).reshape(-1, *x.shape[1:])

    def _labelled_share(self, batch: dict[str, Any]) -> torch.Tensor | float:
        """This process's labelled entries over the mean per process: scales a loss averaged over them,
        so that the average over processes is the average over the global batch (1 with one process)."""
        if self._world() == 1:
            return 1.0
        count = (
            batch["mask"].to(torch.float64).sum()
            if self.task == "multilabel"
            else batch["targets"].new_tensor(float(batch["targets"].shape[0]), dtype=torch.float64)
        )
        mean_count = self.all_gather(count).mean()
        return (count / mean_count.clamp_min(1.0)).to(batch["targets"].dtype)

    def prediction_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        if self.task == "multilabel":
            return masked_binary_cross_entropy(logits, batch["targets"], batch["mask"])
        return cross_entropy(logits, batch["targets"])

    def distillation_terms(self, out: StudentOutput, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The teacher-side terms for a student output (:meth:`Distiller.terms`)."""
        single = self.task == "single_label"
        return self.distiller.terms(out, batch, self.prediction_loss, self._global_batch, single)

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every loss term of one batch: ``pred``, ``reg``, ``feature``, ``kd``, ``teacher``, ``loss``."""
        batch = self.with_logmel(batch, train=self.training)
        return self.loss_terms(self.student(batch[self.student.input_key]), batch)

    def loss_terms(self, out: StudentOutput, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """:meth:`losses` of a student output already computed for ``batch``. Every loss is computed in
        float32 or wider, outside autocast: under ``trainer.precision: bf16-mixed`` the student runs in
        bfloat16, but distance correlation's double centring and the losses' sums would lose their digits."""
        if out.logits.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled(out.logits.device.type):
            with torch.autocast(out.logits.device.type, enabled=False):
                wide = StudentOutput(_at_least_float32(out.logits), [_at_least_float32(s) for s in out.stages])
                return self._loss_terms(wide, batch)
        return self._loss_terms(out, batch)

    def _loss_terms(self, out: StudentOutput, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {
            "pred": self.prediction_loss(out.logits, batch),
            **self.distillation_terms(out, batch),
        }
        share = self._labelled_share(batch)
        for key in ("pred", "kd", "teacher"):  # averages over this process's labelled entries
            if key in terms and share != 1.0:
                terms[key] = terms[key] * share
        return self.distiller.combine(terms)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        batch = self.with_logmel(batch, train=True)
        partner = batch.pop("partner", None)  # a clip from the whole training split per clip (the data module's)
        if self.authors_augment:  # per clip, SpecAugment first (masks at log 0), then mixing with folded weights
            batch = self._spec_augment(batch)
            if self.mixup_alpha > 0:
                partner = self._spec_augment(partner) if partner is not None else None
                batch = mixup(batch, self.mixup_alpha, fold=True, partner=partner)
        else:
            if self.mixup_alpha > 0:
                batch = mixup(batch, self.mixup_alpha, partner=partner)
            batch = self._spec_augment(batch)
        terms = self.losses(batch)
        if not torch.isfinite(terms["loss"]):
            self._stop_on_non_finite(terms, batch)
        n, several = batch["targets"].shape[0], self._world() > 1
        for key in ("loss", "reg", "kd", "teacher"):
            if key in terms:
                show = key in ("loss", "reg")
                self.log(f"train_{key}", terms[key], prog_bar=show, on_epoch=True, batch_size=n, sync_dist=several)
        return terms["loss"]

    def _spec_augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.spec_augment or InputKind.LOGMEL not in batch:
            return batch
        sa = self.spec_augment
        logmel = batch["logmel"].clone()  # (the loader's tensor may be shared: mask a copy in place)
        return dict(batch, logmel=spec_augment(logmel, sa.freq, sa.time, inplace=True, fill=self.mask_fill))

    def _stop_on_non_finite(self, terms: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        values = ", ".join(f"{k} {v.item():.4g}" for k, v in terms.items())
        clips = batch.get("clip_id") or ["(ids not in the batch)"]
        raise TrainingError(
            f"step {self.global_step} (epoch {self.current_epoch}): the training loss is not finite ({values}) "
            f"on the batch of clips {', '.join(map(str, clips))}; check these clips' inputs and teacher "
            "embeddings, or lower optimizer.lr"
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        batch = self.with_logmel(batch, train=False)
        out = self.student(batch[self.student.input_key])
        if self.validation_loss == "total":  # (1 − λ)·L_pred + λ·L_reg, as the authors monitor it
            loss = self.loss_terms(out, batch)["loss"]
        else:
            loss = self.prediction_loss(_at_least_float32(out.logits), batch)
        self.val_loss.update(loss, weight=batch["targets"].shape[0])
        self.val_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_validation_epoch_end(self) -> None:
        # computed by torchmetrics over every process's clips: the same value on each (sync_dist keeps it so)
        self.log("val_loss", self.val_loss.compute(), prog_bar=True, sync_dist=True)
        for k, v in self.val_metrics.compute().items():
            self.log(f"val_{k}", v, prog_bar=k in ("mAP", "accuracy"), sync_dist=True)
        self.val_loss.reset()
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.student(self.with_logmel(batch, train=False)[self.student.input_key])
        self.test_metrics.update(out.logits, batch["targets"], batch["mask"])

    def on_test_epoch_end(self) -> None:
        for k, v in self.test_metrics.compute().items():
            self.log(f"test_{k}", v, sync_dist=True)
        self.test_metrics.reset()

    def configure_optimizers(self):
        optimiser = self.config.optimizer
        params = [p for p in self.parameters() if p.requires_grad]  # student, projections, transforms
        opt = OPTIMISERS.build(optimiser.name, **optimiser.model_dump(exclude={"name"}), params=params)
        scheduler = self.config.scheduler
        sched = SCHEDULERS.build(scheduler.name, optimizer=opt, **scheduler.model_dump(exclude={"name"}))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """The plateau schedule's step after each validation, from ``trainer.min_steps`` optimizer steps on
        (before that it neither lowers the rate nor counts epochs without improvement)."""
        if self.global_step < self.config.trainer.min_steps:
            return
        scheduler.step(metric) if metric is not None else scheduler.step()


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is half or bfloat16 (float32 and float64 stay)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def _separate_parts(config: RunConfig, data: RunData) -> list[int] | None:
    """The member widths when an ensemble teacher keeps a regulariser per member (``combine: separate``)."""
    if not config.teacher or config.teacher.options.get("combine") != "separate" or not config.feature:
        return None
    if not data.embedding_parts:
        raise ConfigError("teacher.combine: separate needs the members' widths; pack the data again with this version")
    return data.embedding_parts


def _student(config: RunConfig, num_classes: int, embedding_dim: int | None) -> Student:
    """The run's student; a probe (TeacherLR) reads the teacher's embedding, so it needs its width."""
    options, name = config.student.options, config.student.name
    if config.student.capabilities.is_probe:
        if embedding_dim is None:
            raise TrainingError(f"student {name} (TeacherLR) needs the teacher's embedding width")
        options["embedding_dim"] = embedding_dim
    student = STUDENTS.build(name, num_classes=num_classes, **options)
    if config.trainer.channels_last:
        # measured 0.68-0.82x the step time on the CPU for the convolutional students (issue 9); same values
        student.to(memory_format=torch.channels_last)
    return student


def _metrics(task: str, num_classes: int, test: bool = False) -> MaskedMultilabelMetrics | SingleLabelMetrics:
    """The validation or (``test``: keeping each class's AP) test metrics of the task."""
    if task == "multilabel":
        return MaskedMultilabelMetrics(keep_per_class=test)
    return SingleLabelMetrics(num_classes)
