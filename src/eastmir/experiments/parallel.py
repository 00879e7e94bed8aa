"""Many fits of a study at once: ``--jobs N`` for ``experiment``, ``sweep`` and ``reproduce``.

A study is a list of :class:`Job` values, each a run's config and the runs it
needs first (KD's TeacherLR of the same seed and data). :func:`run_jobs`
trains them one after another in this process (``jobs=1``, as before), or
``N`` at a time, each in its own process (spawned: no fork after torch has
started threads), submitting a job as soon as the runs it needs have
finished. The processes share one work directory and one store: reading a
complete store never waits, and two runs that fill the same collection wait
for each other instead of failing (:meth:`eastmir.data.store.Collection.building`).

Resources are split, not oversubscribed: on the CPU each run gets
``cores // N`` intra-op threads (unless its config sets ``threads``); with
CUDA devices, runs that would use one are given device ``i mod count`` in
turn. Each run, as it finishes, prints its score, its stopping point and its
wall time. This is a process pool for independent runs; one run across
several devices is Lightning's DDP (``trainer.devices``), not this.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eastmir import pipeline
from eastmir.config import RunConfig
from eastmir.errors import ConfigError
from eastmir.rundir import RunDirectory


@dataclass(frozen=True)
class Job:
    """One run of a study: its config and the names of the runs that must finish before it starts."""

    config: RunConfig
    after: tuple[str, ...] = ()
    note: str = ""  # said when it starts (a probe's own schedule, …)

    @property
    def name(self) -> str:
        return self.config.name


def finished_line(run_dir: Path, seconds: float) -> str:
    """``finished east_final-seed1 in 84 s: test mAP 0.512, best validation mAP 0.550, 12 epochs / 300 steps``."""
    metrics = RunDirectory(run_dir).read_metrics()
    tests = ", ".join(f"{k} {v:.3f}" for k, v in metrics["test"].items())
    best = next(((k, v) for k, v in metrics.items() if k.startswith("best_val_") and v is not None), None)
    valid = f", best validation {best[0].removeprefix('best_val_')} {best[1]:.3f}" if best else ""
    stalled = " (stalled: at chance level)" if metrics.get("stalled") else ""
    stop = f"{metrics.get('epochs')} epochs / {metrics.get('steps')} steps"
    return f"finished {run_dir.name} in {seconds:.0f} s: test {tests}{valid}, {stop}{stalled}"


def run_jobs(jobs: Sequence[Job], n_jobs: int = 1, progress: bool = True) -> dict[str, Path]:
    """Train every job (module docstring); ``{name: run directory}``. A job that fails stops the study with
    its error once the runs already started have finished (their results are kept; a rerun resumes)."""
    if n_jobs < 1:
        raise ConfigError(f"--jobs {n_jobs}: must be at least 1")
    names = {job.name for job in jobs}
    for job in jobs:
        missing = [n for n in job.after if n not in names]
        if missing:
            raise ConfigError(f"run {job.name} needs {', '.join(missing)}, which this study does not run")
    if n_jobs == 1:
        return _one_at_a_time(jobs, progress)
    return _in_processes(jobs, n_jobs)


def _one_at_a_time(jobs: Sequence[Job], progress: bool) -> dict[str, Path]:
    done: dict[str, Path] = {}
    for i, job in enumerate(_in_order(jobs), 1):
        print(f"\n=== run {i}/{len(jobs)}: {job.name} ==={job.note}", flush=True)
        started = time.time()
        done[job.name] = pipeline.fit(job.config, progress=progress)
        print(finished_line(done[job.name], time.time() - started), flush=True)
    return done


def _in_order(jobs: Sequence[Job]) -> list[Job]:
    """The jobs with every job after the ones it needs (a stable order otherwise)."""
    ordered: list[Job] = []
    placed: set[str] = set()
    pending = list(jobs)
    while pending:
        ready = [job for job in pending if set(job.after) <= placed]
        if not ready:
            raise ConfigError(f"runs that need each other: {', '.join(job.name for job in pending)}")
        ordered += ready
        placed |= {job.name for job in ready}
        pending = [job for job in pending if job.name not in placed]
    return ordered


def _in_processes(jobs: Sequence[Job], n_jobs: int) -> dict[str, Path]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    devices = _cuda_devices()
    pending, running, done = list(_in_order(jobs)), {}, {}
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        submitted = 0
        while pending or running:
            while failure is None and len(running) < n_jobs:
                ready = next((job for job in pending if set(job.after) <= set(done)), None)
                if ready is None:
                    break
                pending.remove(ready)
                config = _placed(ready.config, threads, devices, submitted)
                print(f"=== started {ready.name} ({submitted + 1}/{len(jobs)}) ==={ready.note}", flush=True)
                running[pool.submit(_fit_quietly, config)] = (ready, time.time())
                submitted += 1
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, started = running.pop(future)
                try:
                    done[job.name] = future.result()
                except BaseException as err:  # the study stops with the first failed run's error
                    failure = failure or err
                    continue
                print(finished_line(done[job.name], time.time() - started), flush=True)
    if failure is not None:
        raise failure
    return done


def _placed(config: RunConfig, threads: int, devices: int, index: int) -> RunConfig:
    """``config`` with its share of the machine: CPU threads, and a CUDA device in turn where it uses one."""
    changes: dict = {}
    if not config.threads:
        changes["threads"] = threads
    trainer = config.trainer
    if devices and trainer.accelerator in ("auto", "gpu", "cuda") and trainer.devices in ("auto", 1, "1"):
        changes["trainer"] = {"devices": [index % devices]}
    return config.changed(changes) if changes else config


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _fit_quietly(config: RunConfig) -> Path:
    """One run in a worker process, without progress bars (several would interleave)."""
    return pipeline.fit(config, progress=False)
