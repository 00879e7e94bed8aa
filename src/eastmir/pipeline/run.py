"""``eastmir fit``: train and test one run with Lightning; the run directory it writes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eastmir.data.store import remove_stale_parts
from eastmir.errors import ConfigError, TrainingError
from eastmir.filelock import first_process
from eastmir.pipeline.rundata import RunData, run_data
from eastmir.rundir import RunDirectory
from eastmir.schema import teacher_label, validate_config


def _separate_parts(config: dict, data: RunData) -> list[int] | None:
    """The member widths when an ensemble teacher keeps a regulariser per member (``combine: separate``)."""
    teacher = config["teacher"] or {}
    if teacher.get("combine") != "separate" or not (config["distillation"] or {}).get("feature"):
        return None
    if not data.embedding_parts:
        raise ConfigError("teacher.combine: separate needs the members' widths; pack the data again with this version")
    return data.embedding_parts


def _check_prerequisites(config: dict) -> dict | None:
    """The KD head of ``teacher_run``, read before any other work (a missing run fails at once)."""
    kd = (config["distillation"] or {}).get("kd")
    if not kd:
        return None
    from eastmir.training.checkpoints import read_teacher_head

    return read_teacher_head(kd["teacher_run"])


def fit(
    config: dict,
    progress: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train and test one run; returns its run directory ``{workdir}/runs/<name>`` (:mod:`eastmir.rundir`).

    It holds the resolved ``config.yaml``, the run's fingerprint,
    ``checkpoints/`` (the best by the validation metric, named with it, and
    ``last.ckpt``), the CSV log and ``metrics.json``. An interrupted run
    resumes from its last checkpoint to the result it would have had, but only
    when its config and data are those it started with; a finished one is not
    retrained unless ``overwrite``. One process at a time trains a run.
    ``callbacks`` are extra Lightning callbacks.
    """
    config = validate_config(config, config.get("name", "config") if isinstance(config, dict) else "config")
    run = RunDirectory.of(config["workdir"], config["name"])
    if not first_process():
        return _fit(config, run, progress, callbacks)
    with run.lock():
        if overwrite:
            _empty(run)
        run.check_fingerprint(config)
        if run.finished:
            print(f"{run.path}: already finished (metrics.json); pass --overwrite to retrain")
            return run.path
        return _fit(config, run, progress, callbacks)


def _empty(run: RunDirectory) -> None:
    """Delete what a run directory holds, but the lock this process holds in it."""
    if run.path.is_dir():
        for item in run.path.iterdir():
            if item != run.lock_file:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def _fit(config: dict, run: RunDirectory, progress: bool, callbacks: Sequence[Any]) -> Path:
    from eastmir.training.checkpoints import check_resumable, read_checkpoint
    from eastmir.training.datamodule import ClipDataModule
    from eastmir.training.system import EastSystem
    from eastmir.training.trainer import build_trainer, interrupts_as_keyboard, seed_run, training_done, trim_log

    if run.checkpoints.is_dir():  # checkpoints a killed process wrote but never renamed into place
        remove_stale_parts(run.checkpoints)
    resume = run.resume_checkpoint()
    if resume is not None:
        check_resumable(resume)
    teacher_head = _check_prerequisites(config)
    started = time.time()
    if config["threads"]:
        torch.set_num_threads(config["threads"])

    data = run_data(config, progress)
    digest = data.fingerprint()
    if first_process():
        run.check_fingerprint(config, digest)
        run.write_fingerprint(config, digest)
    config["task"] = data.task

    seed_run(config["seed"])
    if first_process():
        run.write_config(config)
    system = EastSystem(
        config,
        len(data.classes),
        embedding_dim=data.embedding_dim,
        classes=data.classes,
        clip_seconds=data.clip_seconds,
        embedding_parts=_separate_parts(config, data),
    )
    if teacher_head is not None:
        system.set_teacher_head(teacher_head, str(config["distillation"]["kd"]["teacher_run"]))
    batch, workers = config["data"]["batch_size"], config["data"]["num_workers"]
    lengths = (data.input_key, data.input_length, data.input_pad, data.embedding_frames)
    if data.stream:
        dm = ClipDataModule.streamed(*data.stream, *lengths, batch_size=batch, num_workers=workers, seed=config["seed"])
    else:
        dm = ClipDataModule(data.records, *lengths, batch_size=batch, num_workers=workers, seed=config["seed"])
    trainer, best = build_trainer(config, run, system.monitor, progress, resume is not None, callbacks)
    if resume is not None:
        trim_log(run.log_file, int(read_checkpoint(resume).get("epoch", -1)))
    if resume is None or not training_done(resume, config["trainer"]["max_epochs"]):
        with interrupts_as_keyboard(trainer):
            trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
        if trainer.is_global_zero:
            trim_log(run.log_file)
    best_path = best.best_model_path or run.newest_best()
    if not best_path:
        steps = config["trainer"]["max_steps"]
        if steps is not None and steps > 0:
            raise ConfigError(
                f"trainer.max_steps: {steps} step(s) ended training before the first validation "
                f"(an epoch here has {trainer.num_training_batches} steps), so no checkpoint was chosen; "
                "raise trainer.max_steps to at least one epoch"
            )
        raise TrainingError(f"{run.path}: training saved no checkpoint; did a validation epoch run?")
    with interrupts_as_keyboard(trainer):
        test = trainer.test(system, datamodule=dm, ckpt_path=str(best_path), verbose=False)[0]
    multilabel = system.task == "multilabel"
    thresholds = _validation_thresholds(system, dm) if multilabel else None
    per_class = _test_per_class_ap(system, dm) if multilabel else None
    last = read_checkpoint(run.resume_checkpoint())  # last.ckpt, or what the run resumed from if it had none
    metric = system.monitor
    metrics = {
        "name": config["name"],
        "system": config["system"] or config["name"],
        "student": config["student"]["name"],
        "teacher": teacher_label(config["teacher"]),
        "dataset": data.dataset,
        "classes": data.classes,
        "test": {k.removeprefix("test_"): float(v) for k, v in test.items()},
        f"best_{metric}": _best_score(read_checkpoint(best_path)),
        "best_checkpoint": str(Path(best_path).relative_to(run.path)),
        "epochs": int(last["epoch"]) + 1,
        "steps": int(last["global_step"]),
        "n_clips": data.counts(),
        "left_out": data.left_out,
        "thresholds": thresholds,
        "test_per_class_ap": per_class,
        "train_fraction": config["data"]["train_fraction"],
        "backbone_parameters": system.student.backbone_parameters(),
        "wall_seconds": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        run.write_metrics(metrics)
    return run.path


def _predictions(system, loader) -> tuple:
    """``(probs, targets, mask)``, each ``(clips, classes)``, of the loaded checkpoint over ``loader``."""
    import numpy as np

    probs, targets, mask = [], [], []
    system.eval()
    with torch.no_grad():
        for batch in loader:
            batch = {k: _onto(v, system) for k, v in batch.items()}
            out = system.student(system.with_logmel(batch, train=False)[system.student.input_key])
            probs.append(torch.sigmoid(out.logits).cpu().numpy())
            batch = {k: v.cpu() if torch.is_tensor(v) else v for k, v in batch.items()}
            targets.append(batch["targets"].numpy())
            mask.append(batch["mask"].numpy())
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(mask)


def _onto(value, system):
    """A batch value on the system's device, floating point in its precision (``trainer.precision=64-true``)."""
    if not torch.is_tensor(value):
        return value
    return value.to(system.device, dtype=system.dtype) if value.is_floating_point() else value.to(system.device)


def _validation_thresholds(system, dm) -> dict[str, float]:
    """Per-class thresholds of the best checkpoint (loaded by ``test``) that maximise F1 on the validation split."""
    from eastmir.metrics import choose_thresholds

    chosen = choose_thresholds(*_predictions(system, dm.full_loader("valid")))
    return {c: round(float(t), 6) for c, t in zip(system.classes, chosen)}


def _test_per_class_ap(system, dm) -> dict[str, float | None]:
    """Each class's test average precision (``None`` without a labelled positive), for the report's bars."""
    from eastmir.metrics import per_class_average_precision

    aps = per_class_average_precision(*_predictions(system, dm.full_loader("test")))
    return {c: None if ap is None else round(ap, 6) for c, ap in zip(system.classes, aps)}


def _best_score(state: dict) -> float | None:
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None
