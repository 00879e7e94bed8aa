"""The tail of a run: test the best checkpoint, choose thresholds on validation, and gather what
``metrics.json`` records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from eastmir.config import RunConfig
from eastmir.data.clips import RunData
from eastmir.metrics import choose_thresholds
from eastmir.rundir import RunDirectory, RunMetrics
from eastmir.training.checkpoints import read_checkpoint
from eastmir.training.datamodule import ClipDataModule
from eastmir.training.system import EastSystem
from eastmir.training.trainer import DataWait, interrupts_as_keyboard


def evaluate(
    trainer: L.Trainer,
    system: EastSystem,
    dm: ClipDataModule,
    best_path: str | Path,
    config: RunConfig,
    data: RunData,
    run: RunDirectory,
    started: float,
) -> tuple[RunMetrics, str | None]:
    """Test ``best_path``; returns what ``metrics.json`` records (:func:`run_metrics`: the test metrics, the
    best validation score, and for multi-label runs each class's test AP and the validation threshold that
    maximises its F1) and, for a run whose best validation score is at chance level (``stalled``), the line
    that says so (:func:`stalled_line`; else ``None``)."""
    multilabel = system.task == "multilabel"
    chance, clips = validation_chance(dm, multilabel)
    with interrupts_as_keyboard(trainer):
        test = trainer.test(system, datamodule=dm, ckpt_path=str(best_path), verbose=False)[0]
    results = {
        "test": {k.removeprefix("test_"): float(v) for k, v in test.items()},
        "test_per_class_ap": per_class_test_ap(system) if multilabel else None,
    }
    metrics = run_metrics(config, data, run, system, trainer, results, best_path)
    best = metrics.get(f"best_{system.monitor}")  # type: ignore[misc]
    metrics["chance"] = round(chance, 6)
    metrics["stalled"] = best is not None and is_stalled(float(best), chance, clips)
    warning = stalled_line(config, metrics, system.monitor) if metrics["stalled"] else None
    metrics["thresholds"] = validation_thresholds(system, dm) if multilabel else None
    metrics["wall_seconds"] = round(time.time() - started, 1)
    return metrics, warning


def stalled_line(config: RunConfig, metrics: RunMetrics, monitor: str) -> str:
    """The line a run that never rose above chance prints: what happened and what to change."""
    best = metrics.get(f"best_{monitor}")
    return (
        f"warning: run {config.name} stalled: its best validation {monitor.removeprefix('val_')} {best:.3f} is at "
        f"chance level ({metrics['chance']:.3f} without listening) after {metrics['steps']} steps; it did not learn, "
        f"and reports leave it out of means and comparisons. Give it more steps before the stopping rules act "
        f"(trainer.min_steps, now {config.trainer.min_steps}) or another learning rate (optimizer.lr, now "
        f"{config.optimizer.lr:g}), then rerun with --overwrite"
    )


def validation_chance(dm: ClipDataModule, multilabel: bool) -> tuple[float, int]:
    """``(score, clips)``: the validation score a prediction that ignores the audio reaches, and the number of
    validation clips. Single-label: the share of the most common class (accuracy of always naming it);
    multi-label: the mean over classes with a labelled positive of their share of positives (the expected
    average precision of scores drawn at random)."""
    targets, masks = [], []
    for batch in dm.full_loader("valid"):
        targets.append(batch["targets"].cpu().numpy() > 0.5)
        masks.append(batch["mask"].cpu().numpy().astype(bool))
    positive, labelled = np.concatenate(targets), np.concatenate(masks)
    if not multilabel:
        return float(positive.sum(0).max() / max(len(positive), 1)), len(positive)
    shares = [positive[labelled[:, c], c].mean() for c in range(positive.shape[1]) if positive[labelled[:, c], c].any()]
    return (float(np.mean(shares)) if shares else 0.0), len(positive)


FEWEST_TO_TELL = 20  # validation clips below which a score cannot be told from chance


def is_stalled(best: float, chance: float, clips: int) -> bool:
    """Whether a best validation score is at chance level: within two points, or one clip's worth, of it. With
    fewer than :data:`FEWEST_TO_TELL` validation clips one clip moves the score by five points or more, and a run
    that learned cannot be told from one that did not: never stalled then."""
    return clips >= FEWEST_TO_TELL and best <= chance + max(0.02, 1.0 / clips)


def predictions(system: EastSystem, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probs, targets, mask)``, each ``(clips, classes)``, of the loaded checkpoint over ``loader``."""
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


def _onto(value: Any, system: EastSystem) -> Any:
    """A batch value on the system's device, floating point in its precision (``trainer.precision=64-true``)."""
    if not torch.is_tensor(value):
        return value
    return value.to(system.device, dtype=system.dtype) if value.is_floating_point() else value.to(system.device)


def validation_thresholds(system: EastSystem, dm: ClipDataModule) -> dict[str, float]:
    """Per-class thresholds of the loaded checkpoint that maximise F1 on the validation split."""
    probs, targets, mask = predictions(system, dm.full_loader("valid"))
    chosen = choose_thresholds(probs, targets, mask)
    return {c: round(float(t), 6) for c, t in zip(system.classes, chosen)}


def per_class_test_ap(system: EastSystem) -> dict[str, float | None]:
    """Each class's test average precision (``None`` without a labelled positive), for the report's bars: kept
    by the test metrics of the ``trainer.test`` just run (the test split is read once)."""
    aps = system.test_metrics.per_class_ap
    if aps is None:
        raise RuntimeError("per_class_test_ap: run trainer.test first (the test metrics keep the per-class AP)")
    return {c: None if ap is None else round(ap, 6) for c, ap in zip(system.classes, aps)}


def best_score(state: dict[str, Any]) -> float | None:
    """The best-checkpoint callback's score in a checkpoint."""
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


def run_metrics(
    config: RunConfig,
    data: RunData,
    run: RunDirectory,
    system: EastSystem,
    trainer: L.Trainer,
    results: dict[str, Any],
    best_path: str | Path,
) -> RunMetrics:
    """``metrics.json``: what the run is, what it trained on, and its test result (``thresholds`` and
    ``wall_seconds`` are left for :func:`evaluate` to fill in)."""
    best = read_checkpoint(best_path)
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
        "n_clips": data.n_clips,
        "left_out": data.left_out,
        "thresholds": None,
        "test_per_class_ap": results["test_per_class_ap"],
        "train_fraction": config.data.train_fraction,
        "backbone_parameters": system.student.backbone_parameters(),
        "wall_seconds": 0.0,
    }
    waited = next((c.share for c in trainer.callbacks if isinstance(c, DataWait)), None)
    if waited is not None:  # this training's (a resumed run's: since it resumed)
        metrics["data_wait"] = round(waited, 4)
    metrics[f"best_{system.monitor}"] = best_score(best)  # type: ignore[literal-required]
    return metrics
