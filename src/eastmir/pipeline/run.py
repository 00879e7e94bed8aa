"""``eastmir fit``: train and test one run with Lightning; the run directory it writes."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from eastmir.data.store import remove_stale_parts
from eastmir.errors import ConfigError, TrainingError
from eastmir.pipeline.rundata import RunData, run_data
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
    """Train and test one run; returns its run directory ``{workdir}/runs/<name>``.

    It holds the resolved ``config.yaml``, ``checkpoints/`` (the best by the
    validation metric, named with it, and ``last.ckpt``), CSV ``logs/`` and
    ``metrics.json``. An interrupted run resumes from its last checkpoint to
    the result it would have had; a finished one is not retrained unless
    ``overwrite``. ``callbacks`` are extra Lightning callbacks.
    """
    import lightning as L

    from eastmir.training.checkpoints import check_resumable, read_checkpoint, resume_checkpoint
    from eastmir.training.datamodule import ClipDataModule
    from eastmir.training.system import EastSystem
    from eastmir.training.trainer import build_trainer, training_done, trim_log

    config = validate_config(config, config.get("name", "config") if isinstance(config, dict) else "config")
    run_dir = Path(config["workdir"]) / "runs" / config["name"]
    if (run_dir / "metrics.json").exists() and not overwrite:
        print(f"{run_dir}: already finished (metrics.json); pass --overwrite to retrain")
        return run_dir
    if overwrite and run_dir.exists() and os.environ.get("LOCAL_RANK", "0") == "0":
        # (DDP's other processes rerun this command once the first has started training: they must not delete)
        shutil.rmtree(run_dir)
    if (run_dir / "checkpoints").is_dir():  # checkpoints a killed process wrote but never renamed into place
        remove_stale_parts(run_dir / "checkpoints")
    resume = resume_checkpoint(run_dir)
    if resume is not None:
        check_resumable(resume)
    teacher_head = _check_prerequisites(config)
    started = time.time()
    if config["threads"]:
        torch.set_num_threads(config["threads"])

    data = run_data(config, progress)
    config["task"] = data.task

    L.seed_everything(config["seed"], workers=True, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
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
    trainer, best = build_trainer(config, run_dir, system.monitor, progress, resume is not None, callbacks)
    if resume is not None:
        trim_log(run_dir, int(read_checkpoint(resume).get("epoch", -1)))
    if resume is None or not training_done(resume, config["trainer"]["max_epochs"]):
        trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
    best_path = best.best_model_path or _best_from_disk(run_dir)
    if not best_path:
        steps = config["trainer"]["max_steps"]
        if steps is not None and steps > 0:
            raise ConfigError(
                f"trainer.max_steps: {steps} step(s) ended training before the first validation "
                f"(an epoch here has {trainer.num_training_batches} steps), so no checkpoint was chosen; "
                "raise trainer.max_steps to at least one epoch"
            )
        raise TrainingError(f"{run_dir}: training saved no checkpoint; did a validation epoch run?")
    test = trainer.test(system, datamodule=dm, ckpt_path=best_path, verbose=False)[0]
    multilabel = system.task == "multilabel"
    thresholds = _validation_thresholds(system, dm) if multilabel else None
    per_class = _test_per_class_ap(system, dm) if multilabel else None
    last = read_checkpoint(resume_checkpoint(run_dir))  # last.ckpt, or what the run resumed from if it had none
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
        "best_checkpoint": str(Path(best_path).relative_to(run_dir)),
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
        tmp = run_dir / ".metrics.json.part"
        tmp.write_text(json.dumps(metrics, indent=1))
        tmp.replace(run_dir / "metrics.json")
    return run_dir


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


def _best_from_disk(run_dir: Path) -> str | None:
    from eastmir.training.checkpoints import CHECKPOINT_EPOCH

    def epoch(path: Path) -> int:
        match = CHECKPOINT_EPOCH.search(path.name)
        return int(match.group(1)) if match else -1

    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=epoch)
    return str(best[-1]) if best else None


def _best_score(state: dict) -> float | None:
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None
