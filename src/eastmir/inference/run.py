"""``eastmir.load_run(RUN_DIR)``: a trained run, rebuilt from its checkpoint alone.

The checkpoint holds the validated run config, the class names, the number
of classes and the teacher's embedding width as hyper-parameters, and every
weight (student, front end settings, any KD head or teacher transformation),
so a run directory copied to another machine loads without the work
directory's store, its dataset or the TeacherLR run its KD head came from.
Loading is ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eastmir.config import RunConfig, migrate
from eastmir.errors import ConfigError, RunError, TrainingError
from eastmir.frontend import LogMelFrontend
from eastmir.inputs import InputKind
from eastmir.rundir import RunDirectory
from eastmir.training.checkpoints import read_checkpoint
from eastmir.training.system import EastSystem


@dataclass
class LoadedRun:
    """A trained run: its ``system`` (in eval mode), ``classes``, ``config`` and test ``metrics``."""

    directory: Path
    checkpoint: Path
    system: EastSystem
    classes: list[str]
    config: RunConfig
    metrics: dict[str, Any] | None
    calibration: tuple[Path, ...] = ()  # recordings int8 calibrates on instead of the training clips (--calibrate-on)

    @property
    def student(self) -> torch.nn.Module:
        return self.system.student

    @property
    def input_key(self) -> InputKind:
        """What :attr:`student` reads."""
        return InputKind(self.system.student.input_key)

    @property
    def clip_seconds(self) -> float:
        """The clip length (seconds) the run trained on: what its checkpoint records, else its config's. A run
        that says neither is a one-line :class:`RunError` (prediction windows and exports need it)."""
        seconds = self.system.hparams.get("clip_seconds") or self.config.data.clip_seconds
        if not seconds:
            raise RunError(f"{self.directory}: the run does not say its clip length; set data.clip_seconds")
        return float(seconds)

    def frontend(self) -> LogMelFrontend:
        """The log-mel front end the student was trained on: waveform ``(batch, samples)`` →
        log-mel ``(batch, mels, frames)``."""
        return LogMelFrontend(self.config.frontend)

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The student's logits ``(batch, classes)`` for a batch of its own inputs (pre-sigmoid)."""
        return self.system.student(inputs).logits


def _choose_checkpoint(run: RunDirectory, which: str) -> Path:
    checkpoint = run.last_checkpoint if which == "last" else run.best_checkpoint()
    if checkpoint is None or not checkpoint.is_file():
        raise RunError(f"{run.path}: no checkpoint to load (is it a run directory of `eastmir fit`?)")
    return checkpoint


def load_run(path: str | Path, which: str = "best") -> LoadedRun:
    """Load a run directory (its best checkpoint, or ``which="last"``) or a checkpoint file."""
    path = Path(path)
    if path.is_file():
        checkpoint, run = path, RunDirectory(path.parent.parent)
    elif path.is_dir():
        run = RunDirectory(path)
        checkpoint = _choose_checkpoint(run, which)
    else:
        raise RunError(f"{path}: no such run directory or checkpoint")
    try:
        state = read_checkpoint(checkpoint)
    except TrainingError as err:
        raise RunError(str(err)) from None
    hp = state.get("hyper_parameters") or {}
    if "config" not in hp or "num_classes" not in hp:
        raise RunError(f"{checkpoint}: not an eastmir checkpoint (no run config in its hyper-parameters)")
    try:
        config = migrate(hp["config"], f"{checkpoint}: its run config")  # a run saved by an earlier release
        system = EastSystem(
            config,
            hp["num_classes"],
            hp.get("embedding_dim"),
            hp.get("classes"),
            hp.get("clip_seconds"),
            embedding_period=hp.get("embedding_period"),
        )
    except ConfigError as err:
        raise RunError(f"{checkpoint}: {err}" if str(checkpoint) not in str(err) else str(err)) from None
    try:
        system.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err)[:200])
        raise RunError(f"{checkpoint}: its weights do not fit its own config ({first})") from None
    bad = [
        name
        for name, t in state["state_dict"].items()
        if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        raise RunError(
            f"{checkpoint}: {len(bad)} weight tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}): the "
            "training diverged; retrain with a lower optimizer.lr (eastmir fit … --overwrite)"
        )
    system.eval()
    metrics = run.read_metrics() if run.finished else None
    return LoadedRun(run.path, checkpoint, system, list(system.classes), system.config, metrics)
