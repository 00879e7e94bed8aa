"""One run's training, from its data to its result: what ``eastmir fit`` does once the stages have run.

:func:`train_run` records the run's fingerprint and ``config.yaml``, builds
the system, the data module and the trainer, trains (resuming from the
checkpoint :func:`~eastmir.training.checkpoints.start_state` read), tests the
best checkpoint and writes ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eastmir.config import RunConfig
from eastmir.data.clips import RunData
from eastmir.filelock import first_process
from eastmir.rundir import RunDirectory, run_identity
from eastmir.training.checkpoints import RunIdentity, RunStart
from eastmir.training.datamodule import ClipDataModule
from eastmir.training.evaluation import evaluate
from eastmir.training.system import EastSystem
from eastmir.training.trainer import build_trainer, fit_or_resume, no_checkpoint_error, seed_run


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
    system = EastSystem.for_run(config, data, start.teacher_head)  # a KD head of other classes stops here
    dm = ClipDataModule.for_run(data, config)
    resumed = start.resume is not None
    trainer, best = build_trainer(config, run, system.monitor, progress, resumed, [RunIdentity(identity), *callbacks])
    fit_or_resume(trainer, system, dm, run, start.resume, start.state, config.trainer.max_epochs)
    best_path = best.best_model_path or run.newest_best()
    if not best_path:
        raise no_checkpoint_error(config, run, trainer.num_training_batches)
    metrics, warning = evaluate(trainer, system, dm, best_path, config, data, run, start.started)
    if trainer.is_global_zero:
        run.write_metrics(metrics)
        if warning:
            print(warning)
    return run.path


def _record(config: RunConfig, data: RunData, run: RunDirectory, start: RunStart) -> str:
    """Check the run against what it started with and record it; returns its identity."""
    digest = data.fingerprint()
    identity = run_identity(config.to_dict(), digest)
    if first_process():
        run.check_fingerprint(config.to_dict(), digest, config.added_keys)
        if start.resume is not None and start.state is not None:
            run.check_owner(start.resume, start.state, identity, len(data.classes))
        # config.yaml: every value the run uses written out (the clip length the manifest chose, too)
        written = config.changed({"data": {"clip_seconds": data.clip_seconds}}).to_dict()
        run.record_start(config.to_dict(), digest, data.manifest, written)
    return identity
