"""``eastmir fit``: train and test one run with Lightning; the run directory it writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eastmir.config import RunConfig
from eastmir.data.manifest import MANIFEST_NAME, manifest_sha256
from eastmir.filelock import first_process
from eastmir.pipeline.rundata import run_data
from eastmir.rundir import RunDirectory


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
            run.empty()
        run.check_fingerprint(config.to_dict(), added=config.added_keys)
        if run.finished:
            manifest = None if config.data.stream else manifest_sha256(config.data.root)
            run.check_dataset(manifest, Path(config.data.root) / MANIFEST_NAME)
            print(f"{run.path}: already finished (metrics.json); pass --overwrite to retrain")
            return run.path
        return _fit(config, run, progress, callbacks)


def _fit(config: RunConfig, run: RunDirectory, progress: bool, callbacks: Sequence[Any]) -> Path:
    """The stages the run reads (what is stored is only read), then its training (:mod:`eastmir.training.session`)."""
    from eastmir.training.session import start_run, train_run

    if config.threads:
        torch.set_num_threads(config.threads)
    start = start_run(run, config)  # an unreadable checkpoint or a missing TeacherLR run fails before any work
    data = run_data(config, progress)
    config = config.changed({"task": data.task})
    return train_run(config, data, run, start, progress, callbacks)
