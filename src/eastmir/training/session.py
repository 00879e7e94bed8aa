"""One run's training, from its data to its result: what ``eastmir fit`` does once the stages have run.

:func:`start_run` (before the data: it fails at once on an unreadable
checkpoint or a missing TeacherLR run) finds what an interrupted run resumes
from; :func:`train_run` records the run's fingerprint and ``config.yaml``,
builds the system, the data module and the trainer, trains (resuming), tests
the best checkpoint and writes ``metrics.json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from eastmir.config import RunConfig
from eastmir.data.clips import RunData
from eastmir.errors import ConfigError, TrainingError
from eastmir.fetch import remove_stale_parts
from eastmir.filelock import first_process
from eastmir.rundir import RunDirectory, RunMetrics, run_identity
from eastmir.training.checkpoints import (
    RunIdentity,
    check_owner,
    check_resumable,
    read_checkpoint,
    read_teacher_head,
)
from eastmir.training.datamodule import ClipDataModule
from eastmir.training.evaluation import evaluate
from eastmir.training.system import EastSystem
from eastmir.training.trainer import (
    DataWait,
    build_trainer,
    interrupts_as_keyboard,
    seed_run,
    training_done,
    trim_log,
)


@dataclass(frozen=True)
class RunStart:
    """Where a run starts: the checkpoint it resumes from (``None``: the beginning), the KD head of its
    TeacherLR run, and the wall-clock time it started at."""

    resume: Path | None
    teacher_head: dict[str, torch.Tensor] | None
    started: float
    state: dict[str, Any] | None = None  # the resumed checkpoint, read once


def start_run(run: RunDirectory, config: RunConfig) -> RunStart:
    """Clear what a killed process left, and check what the run resumes from and its KD teacher run."""
    if run.checkpoints.is_dir():  # checkpoints a killed process wrote but never renamed into place
        remove_stale_parts(run.checkpoints)
    resume = run.resume_checkpoint()
    state = check_resumable(resume) if resume is not None else None
    head = read_teacher_head(config.kd.teacher_run) if config.kd else None
    return RunStart(resume, head, time.time(), state)


def train_run(
    config: RunConfig,
    data: RunData,
    run: RunDirectory,
    start: RunStart,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train and test one run on ``data`` in ``run``; returns the run directory."""
    identity = _record(config, data, run, start)
    seed_run(config.seed)
    system = _system(config, data, start.teacher_head)
    dm = ClipDataModule.for_run(data, config)
    resumed = start.resume is not None
    trainer, best = build_trainer(config, run, system.monitor, progress, resumed, [RunIdentity(identity), *callbacks])
    _train(trainer, system, dm, run, start, config.trainer.max_epochs)
    best_path = best.best_model_path or run.newest_best()
    if not best_path:
        raise _no_checkpoint(config, run, trainer.num_training_batches)
    results = evaluate(trainer, system, dm, best_path)
    if trainer.is_global_zero:
        run.write_metrics(_metrics(config, data, run, system, trainer, results, best_path, start.started))
    return run.path


def _record(config: RunConfig, data: RunData, run: RunDirectory, start: RunStart) -> str:
    """Check the run against what it started with and record it; returns its identity."""
    digest = data.fingerprint()
    identity = run_identity(config.to_dict(), digest)
    if first_process():
        run.check_fingerprint(config.to_dict(), digest, config.added_keys)
        if start.resume is not None:
            check_owner(start.resume, identity, config.name, len(data.classes), start.state)
        # config.yaml: every value the run uses written out (the clip length the manifest chose, too)
        written = config.changed({"data": {"clip_seconds": data.clip_seconds}}).to_dict()
        run.record_start(config.to_dict(), digest, data.manifest, written)
    return identity


def _system(config: RunConfig, data: RunData, teacher_head: dict[str, torch.Tensor] | None) -> EastSystem:
    """The system of a run training on ``data``, with the KD head of its TeacherLR run copied in."""
    system = EastSystem(
        config,
        len(data.classes),
        embedding_dim=data.embedding_dim,
        classes=data.classes,
        clip_seconds=data.clip_seconds,
        embedding_parts=_separate_parts(config, data),
        embedding_period=data.embedding_period,
    )
    if teacher_head is not None:
        system.set_teacher_head(teacher_head, str(config.kd.teacher_run))
    return system


def _train(
    trainer: L.Trainer, system: EastSystem, dm: ClipDataModule, run: RunDirectory, start: RunStart, epochs: int
) -> None:
    """Fit (resuming from ``start``), unless the run had already stopped; a diverged run is marked failed for
    ``report`` and never tested."""
    resume = start.resume
    if start.state is not None:
        trim_log(run.log_file, int(start.state.get("epoch", -1)))
        if training_done(start.state, epochs):
            return
    run.failure_file.unlink(missing_ok=True)
    try:
        with interrupts_as_keyboard(trainer):
            trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except TrainingError as err:
        if trainer.is_global_zero:
            run.record_failure(str(err))
        raise TrainingError(f"{run.path}: {err}") from None
    if trainer.is_global_zero:
        trim_log(run.log_file)


def _metrics(
    config: RunConfig,
    data: RunData,
    run: RunDirectory,
    system: EastSystem,
    trainer: L.Trainer,
    results: dict[str, Any],
    best_path: str | Path,
    started: float,
) -> RunMetrics:
    """``metrics.json``: what the run is, what it trained on, and its test result."""
    last = read_checkpoint(run.resume_checkpoint())  # last.ckpt, or what the run resumed from if it had none
    metrics: RunMetrics = {
        "name": config.name,
        "system": config.system_label,
        "student": config.student.name,
        "teacher": config.teacher_label,
        "dataset": data.dataset,
        "classes": data.classes,
        "test": results["test"],
        "best_checkpoint": str(Path(best_path).relative_to(run.path)),
        "epochs": int(last["epoch"]) + 1,
        "steps": int(last["global_step"]),
        "n_clips": data.counts(),
        "left_out": data.left_out,
        "thresholds": results["thresholds"],
        "test_per_class_ap": results["test_per_class_ap"],
        "train_fraction": config.data.train_fraction,
        "backbone_parameters": system.student.backbone_parameters(),
        "wall_seconds": round(time.time() - started, 1),
    }
    waited = next((c.share for c in trainer.callbacks if isinstance(c, DataWait)), None)
    if waited is not None:  # this training's (a resumed run's: since it resumed)
        metrics["data_wait"] = round(waited, 4)
    metrics[f"best_{system.monitor}"] = results[f"best_{system.monitor}"]  # type: ignore[literal-required]
    return metrics


def _no_checkpoint(config: RunConfig, run: RunDirectory, steps_per_epoch: int) -> Exception:
    """Why no best checkpoint exists."""
    steps = config.trainer.max_steps
    if steps is not None and steps > 0:
        return ConfigError(
            f"trainer.max_steps: {steps} step(s) ended training before the first validation "
            f"(an epoch here has {steps_per_epoch} steps), so no checkpoint was chosen; "
            "raise trainer.max_steps to at least one epoch"
        )
    return TrainingError(f"{run.path}: training saved no checkpoint; did a validation epoch run?")


def _separate_parts(config: RunConfig, data: RunData) -> list[int] | None:
    """The member widths when an ensemble teacher keeps a regulariser per member (``combine: separate``)."""
    if not config.teacher or config.teacher.options.get("combine") != "separate" or not config.feature:
        return None
    if not data.embedding_parts:
        raise ConfigError("teacher.combine: separate needs the members' widths; pack the data again with this version")
    return data.embedding_parts
