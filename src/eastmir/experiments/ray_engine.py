"""Sweep runs as Ray Tune trials (``pip install 'eastmir[ray]'``): Ray places them on the CPUs and GPUs of
this machine or of a Ray cluster (``ray start``, then ``RAY_ADDRESS``); each trial is one ordinary
``fit``. Resources per run: ``EASTMIR_RAY_CPUS`` (default 1) and ``EASTMIR_RAY_GPUS`` (default 0)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eastmir.config import RunConfig
from eastmir.errors import ConfigError, TrainingError


def _trial(params: dict[str, Any]) -> dict[str, str]:
    from eastmir import pipeline
    from eastmir.config import validate_config

    config = validate_config(params["config"], "a sweep trial's config")  # plain across the process boundary
    return {"run_dir": str(pipeline.fit(config, progress=False))}


def run_with_ray(jobs: list[tuple[str, dict[str, Any], RunConfig]]) -> list[Path]:
    """Fit every ``(name, point, config)`` as one Ray Tune trial; the run directories in job order."""
    try:
        from ray import tune
    except ImportError:
        raise ConfigError("--engine ray needs Ray Tune: `pip install 'eastmir[ray]'`") from None
    resources = {
        "cpu": float(os.environ.get("EASTMIR_RAY_CPUS", 1)),
        "gpu": float(os.environ.get("EASTMIR_RAY_GPUS", 0)),
    }
    storage = Path(jobs[0][2].workdir).absolute() / "ray_results"
    tuner = tune.Tuner(
        tune.with_resources(_trial, resources),
        param_space={"config": tune.grid_search([config.to_dict() for _, _, config in jobs])},
        run_config=tune.RunConfig(name="eastmir-sweep", storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    by_name: dict[str, Path] = {}
    for result in results:
        if result.error:
            raise TrainingError(f"a sweep run failed under Ray: {result.error}")
        run_dir = Path(result.metrics["run_dir"])
        by_name[run_dir.name] = run_dir
    return [by_name[config.name] for _, _, config in jobs]
