"""Opt-in (`make test-slow`), hours on 2 CPU cores: the synth study of docs/studies.md, by the same
commands.

On the demo's data (800 clips of 3 s: 560 / 80 / 160), with the faithful recipe (the authors' front end and
monitored loss): Baseline, TeacherLR, EAsT_Final with the biased and the unbiased distance correlation, and
EAsT_KD, taught by musicnn and by aiSFX at 25, 50 and 100 % of the training split, three seeds each; then λ by
`eastmir sweep` (0.1, 0.3, 0.6, 0.9 × seeds 0, 1, 2 at 50 %, musicnn) for EAsT_Final with each estimator and
EAsT_KD;
then the report, with the paired differences against the Baseline. Resumable: point ``EASTMIR_STUDY_WORKDIR``
at a workdir where it ran (or ran part way) and only what is missing trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GRID = ["synth/baseline", "synth/teacher_lr", "synth/east_final", "synth/east_final_unbiased", "synth/east_kd"]


def test_the_synth_study_trains_every_cell_sweeps_lambda_and_reports_it(tmp_path):
    from eastmir.cli import main

    workdir = Path(os.environ.get("EASTMIR_STUDY_WORKDIR", tmp_path))
    root = workdir / "data" / "synth"
    common = ["--workdir", str(workdir), "--no-progress"]
    if not (root / "manifest.json").is_file():
        prepare = ["data", "prepare", "synth", "--root", str(root), "--no-progress"]
        assert main([*prepare, "--set", "n_clips=800", "clip_seconds=3.0", "seed=0", "sample_rate=16000"]) == 0
    where = ["--set", f"data.root={root}", "threads=1"]
    study = ["experiment", "limited-data", *common, "--seeds", "0", "1", "2"]
    for teacher in ("musicnn", "aisfx"):
        assert main([*study, "--systems", *GRID, "--teachers", teacher, "--fractions", "0.25", "0.5", "1", *where]) == 0
    for system, extra in (
        ("east_final", []),
        ("east_final_unbiased", []),
        ("east_kd", [f"distillation.kd.teacher_run={workdir}/runs/teacher_lr-musicnn-frac0.5-seed0"]),
    ):
        sweep = ["sweep", *common, "--config", f"synth/{system}", "--name", f"sweep50-{system}-musicnn"]
        sweep += ["--grid", "distillation.lambda=0.1,0.3,0.6,0.9", "seed=0,1,2"]
        sweep += [*where, "data.train_fraction=0.5", "teacher={name: musicnn}", *extra]
        assert main(sweep) == 0
    runs = [d for d in (workdir / "runs").iterdir() if (d / "metrics.json").is_file() and "sweep" not in d.name]
    assert main(["report", *map(str, runs), "--out", str(workdir / "reports" / "study")]) == 0
    table = (workdir / "reports" / "study" / "report.md").read_text()
    assert "Paired differences against the Baseline" in table and "EAsT_Final (unbiased)" in table
