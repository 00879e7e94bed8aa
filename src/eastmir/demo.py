"""``eastmir demo``: from nothing to a paired, several-seed comparison on ``synth``.

Renders the dataset (:data:`DEMO_DATA`, overridable), extracts the
teacher's embeddings (:data:`DEFAULT_TEACHER`, or ``teacher``: any
registered teacher or an ensemble ``a+b``), and trains the requested systems
(default :data:`DEFAULT_SYSTEMS`: Baseline, TeacherLR and the EAsT system the
synth study supports; any config under ``configs/synth`` by name, and first
the runs they require, such as the TeacherLR head of KD) on
:data:`DEMO_FRACTION` of the training split, once per seed of
:data:`DEMO_SEEDS`. A seed fixes the run's training subset, shuffle and
initialisation (as in ``eastmir experiment limited-data``), so each system
is compared with the Baseline of the same seed. It prints and writes to
``{workdir}/runs``: mean ± std over the seeds, the paired differences
against the Baseline (and on how many seeds a system is above it), and
every run (``demo_results.md`` and a CSV). Every step is stored, so a
second run only reprints.
"""

from __future__ import annotations

import time
from pathlib import Path

from eastmir import pipeline
from eastmir.config import (
    RunConfig,
    load_config,
    on_training_share,
    probe_note,
    shipped_config_dir,
    teacher_section,
    with_teacher,
)
from eastmir.errors import ConfigError, UnknownNameError, did_you_mean
from eastmir.fetch import atomic_write
from eastmir.reporting.grid import cells, load_rows, metrics_of, summary_markdown
from eastmir.reporting.paired import paired_differences, paired_markdown
from eastmir.reporting.tables import markdown_table, read_runs, write_csv
from eastmir.rundir import runs_folder

# The synth study (docs/studies.md) decides these: the EAsT system it supports
# (EAsT_Final with the unbiased distance correlation at the λ its sweep chose, 0.1: above the Baseline on 3 of
# 3 seeds at 50 %, +.025 ± .011; EAsT_KD at its chosen 0.3 was level with it), its teacher, and that share of
# the training data.
DEFAULT_SYSTEMS = ("baseline", "teacher_lr", "east_final_unbiased")
DEFAULT_TEACHER = "musicnn"
DEMO_FRACTION = 0.5
DEMO_SEEDS = (0, 1, 2)
DEMO_DATA = {"n_clips": 800, "clip_seconds": 3.0, "sample_rate": 16000, "seed": 0}  # 560 / 80 / 160 clips


def available_systems() -> list[str]:
    return sorted(p.stem for p in (shipped_config_dir() / "synth").glob("*.yaml") if p.stem != "base")


def run_demo(
    workdir: str | Path,
    systems: list[str] | tuple[str, ...] = DEFAULT_SYSTEMS,
    overrides: list[str] | None = None,
    data_options: dict | None = None,
    progress: bool = True,
    teacher: str = DEFAULT_TEACHER,
    seeds: list[int] | tuple[int, ...] = DEMO_SEEDS,
    fraction: float = DEMO_FRACTION,
) -> str:
    """Prepare synth, train ``systems`` (with what they require) taught by ``teacher`` on ``fraction`` of the
    training split once per seed, print and write the tables; returns the Markdown written."""
    started = time.time()
    valid = available_systems()
    for s in systems:
        if s not in valid:
            raise UnknownNameError(f"unknown demo system {s!r}{did_you_mean(s, valid)}; valid: {', '.join(valid)}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction: {fraction} is not in (0, 1]")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: give one or more different seeds, got {list(seeds)}")
    configs: dict[str, RunConfig] = {}

    def config(name: str) -> RunConfig:
        if name not in configs:
            configs[name] = with_teacher(load_config(name, overrides, workdir=workdir, shared=True), teacher)
        return configs[name]

    teacher_section(teacher)  # every name is checked before any data is rendered or read
    for name in (f"synth/{s}" for s in systems):
        for needed in config(name).requires:
            config(needed)
    root = config(f"synth/{systems[0]}").data.root
    pipeline.prepare("synth", root, {**DEMO_DATA, **(data_options or {})}, progress)
    done: dict[str, Path] = {}

    def run(name: str, seed: int) -> Path:
        share = on_training_share(config(name), fraction, seed, name)
        if share.name not in done:
            for needed in share.requires:  # e.g. KD needs its TeacherLR head, of the same seed and data
                run(needed, seed)
            print(f"\n=== {share.name} ==={probe_note(share)}", flush=True)
            done[share.name] = pipeline.fit(share, progress=progress)
        return done[share.name]

    run_dirs = [run(f"synth/{s}", seed) for seed in seeds for s in systems]
    runs = read_runs(run_dirs)
    text = _results(run_dirs, runs, f"{teacher} teacher, {fraction:.0%} of the training split", seeds)
    out = runs_folder(workdir)
    atomic_write(out / "demo_results.md", text)
    write_csv(runs, out / "demo_results.csv")
    print("\n" + text)
    print(f"written to {out / 'demo_results.md'} and demo_results.csv; demo wall time {time.time() - started:.0f} s")
    return text


def _results(run_dirs: list[Path], runs: list, what: str, seeds: list[int] | tuple[int, ...]) -> str:
    """The demo's Markdown: the mean ± std over seeds, the paired differences against the Baseline, every run."""
    records, _ = load_rows(run_dirs)
    metrics = metrics_of(records)
    summary = summary_markdown(cells(records), metrics)
    pairs = paired_differences(records, metrics[0])
    text = f"# eastmir demo: synth, Mobile FCN student, {what}, seeds {list(seeds)}\n\n"
    text += f"## Test split, mean ± std over {len(seeds)} seed{'s' if len(seeds) > 1 else ''}\n\n{summary}\n\n"
    if pairs:
        text += "## Against the Baseline of the same seed\n\n" + paired_markdown(pairs, metrics[0]) + "\n\n"
    return text + "## Every run\n\n" + markdown_table(runs) + "\n"
