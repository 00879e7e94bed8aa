"""``eastmir fit``: train and test one run with Lightning; the run directory it writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eastmir.config import RunConfig
from eastmir.data.manifest import MANIFEST_NAME
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
    from eastmir.training.checkpoints import start_state  # Lightning, imported when a run trains
    from eastmir.training.session import train_run

    run = RunDirectory.of(config.workdir, config.name)
    manifest = None if config.data.stream else Path(config.data.root) / MANIFEST_NAME
    with run.claim(config.to_dict(), config.added_keys, overwrite, manifest) as claim:
        if not claim.to_train:
            print(f"{run.path}: already finished (metrics.json); pass --overwrite to retrain")
            return run.path
        if config.threads:
            torch.set_num_threads(config.threads)
        start = start_state(claim, config)  # a broken checkpoint, or a KD head from other data, stops before any work
        data = run_data(config, progress)  # the stages the run reads (what is stored is only read)
        return train_run(config.changed({"task": data.task}), data, run, start, progress, callbacks)
