"""``eastmir fit``: train and test one run with Lightning; the run directory it writes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eastmir.config import RunConfig
from eastmir.data.manifest import MANIFEST_NAME as MANIFEST
from eastmir.data.store import remove_stale_parts
from eastmir.errors import ConfigError, TrainingError
from eastmir.fetch import sha256_of
from eastmir.filelock import first_process
from eastmir.pipeline.rundata import RunData, run_data
from eastmir.rundir import RunDirectory, RunMetrics, run_identity


def fit(
    config: RunConfig,
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
    run = RunDirectory.of(config.workdir, config.name)
    if not first_process():
        return _fit(config, run, progress, callbacks)
    with run.lock():
        if overwrite:
            _empty(run)
        run.check_fingerprint(config.to_dict(), added=config.added_keys)
        if run.finished:
            run.check_dataset(manifest_digest(config), Path(config.data.root) / MANIFEST)
            print(f"{run.path}: already finished (metrics.json); pass --overwrite to retrain")
            return run.path
        return _fit(config, run, progress, callbacks)


def manifest_digest(config: RunConfig) -> str | None:
    """sha256 of the run's dataset manifest (``None`` for streamed shards, or where there is none)."""
    if config.data.stream:
        return None
    path = Path(config.data.root) / MANIFEST
    return sha256_of(path) if path.is_file() else None


def _empty(run: RunDirectory) -> None:
    """Delete what a run directory holds, but the lock this process holds in it."""
    if run.path.is_dir():
        for item in run.path.iterdir():
            if item != run.lock_file:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def _fit(config: RunConfig, run: RunDirectory, progress: bool, callbacks: Sequence[Any]) -> Path:
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

    if run.checkpoints.is_dir():  # checkpoints a killed process wrote but never renamed into place
        remove_stale_parts(run.checkpoints)
    resume = run.resume_checkpoint()
    if resume is not None:
        check_resumable(resume)
    teacher_head = read_teacher_head(config.kd.teacher_run) if config.kd else None  # a missing run fails at once
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)

    data = run_data(config, progress)
    config = config.changed({"task": data.task})
    digest = data.fingerprint()
    identity = run_identity(config.to_dict(), digest)
    if first_process():
        run.check_fingerprint(config.to_dict(), digest, config.added_keys)
        if resume is not None:
            check_owner(resume, identity, config.name, len(data.classes))
        run.write_fingerprint(config.to_dict(), digest, manifest_digest(config))
        # config.yaml: every value the run uses written out (the clip length the manifest chose, too)
        run.write_config(config.changed({"data": {"clip_seconds": data.clip_seconds}}).to_dict())
    seed_run(config.seed)
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
    dm = _data_module(ClipDataModule, data, config)
    trainer, best = build_trainer(
        config, run, system.monitor, progress, resume is not None, [RunIdentity(identity), *callbacks]
    )
    if resume is not None:
        trim_log(run.log_file, int(read_checkpoint(resume).get("epoch", -1)))
    if resume is None or not training_done(resume, config.trainer.max_epochs):
        run.failure_file.unlink(missing_ok=True)
        try:
            with interrupts_as_keyboard(trainer):
                trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
        except TrainingError as err:  # a diverged run: marked failed for `report`, never tested
            if trainer.is_global_zero:
                run.record_failure(str(err))
            raise TrainingError(f"{run.path}: {err}") from None
        if trainer.is_global_zero:
            trim_log(run.log_file)
    best_path = best.best_model_path or run.newest_best()
    if not best_path:
        _no_checkpoint(config, run, trainer.num_training_batches)
    results = evaluate(trainer, system, dm, best_path)
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
    if trainer.is_global_zero:
        run.write_metrics(metrics)
    return run.path


def _data_module(module: type, data: RunData, config: RunConfig) -> Any:
    """The run's ClipDataModule: over the store's clips, or streamed from packed shards."""
    lengths = (data.input_key, data.input_length, data.input_pad, data.embedding_frames)
    settings = {"batch_size": config.data.batch_size, "num_workers": config.data.num_workers, "seed": config.seed}
    if data.stream:
        return module.streamed(*data.stream, *lengths, **settings)
    aug = config.augmentation
    partners = aug.mixup_alpha > 0 and aug.mixup_partner == "training_set"
    return module(data.records, *lengths, **settings, mixup_partners=partners)


def _separate_parts(config: RunConfig, data: RunData) -> list[int] | None:
    """The member widths when an ensemble teacher keeps a regulariser per member (``combine: separate``)."""
    if not config.teacher or config.teacher.options.get("combine") != "separate" or not config.feature:
        return None
    if not data.embedding_parts:
        raise ConfigError("teacher.combine: separate needs the members' widths; pack the data again with this version")
    return data.embedding_parts


def _no_checkpoint(config: RunConfig, run: RunDirectory, steps_per_epoch: int) -> None:
    """Stop, saying why no best checkpoint exists."""
    steps = config.trainer.max_steps
    if steps is not None and steps > 0:
        raise ConfigError(
            f"trainer.max_steps: {steps} step(s) ended training before the first validation "
            f"(an epoch here has {steps_per_epoch} steps), so no checkpoint was chosen; "
            "raise trainer.max_steps to at least one epoch"
        )
    raise TrainingError(f"{run.path}: training saved no checkpoint; did a validation epoch run?")
