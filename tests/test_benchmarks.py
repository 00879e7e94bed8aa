"""Every benchmark with a ``--smoke`` mode runs it: tiny shapes on the CPU, so a broken benchmark is found by
``make test``, not by the person with the GPU. The figures are not checked here (speed is not a unit test);
that each prints its table is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def smoke(name: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gpu_step_smoke_prints_both_recipes_with_ratios_and_launches():
    out = smoke("gpu_step.py")
    assert out.startswith("torch ") and "device cpu" in out.splitlines()[0]
    for recipe in ("openmic recipe", "magnatagatune recipe"):
        assert recipe in out
    rows = [line for line in out.splitlines() if line.startswith("| the authors' way")]
    assert len(rows) == 2 and all(" 1.00 |" in row for row in rows)  # the baseline's ratio to itself
    assert "| eastmir float32 |" in out


@pytest.mark.parametrize("name", ["gpu_fit.py"])
def test_gpu_fit_smoke_prints_the_wait_and_first_step(name):
    out = smoke(name)
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert "data wait" in table[0] and "first step" in table[0]
    cells = [c.strip() for c in table[-1].strip("|").split("|")]
    assert cells[-1].endswith("%") and 0.0 <= float(cells[-1].rstrip("%")) < 100.0


def test_gpu_predict_smoke_compares_two_contenders_on_the_same_outputs():
    out = smoke("gpu_predict.py")
    rows = [line for line in out.splitlines() if line.startswith("| cpu")]
    assert len(rows) == 2
    difference = float(rows[1].strip("|").split("|")[-1])
    assert difference == 0.0  # the same device and precision: worker decoding changes nothing


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("step_time.py", "| system | step (ms) |"),
        ("training_step.py", "| student | input | NCHW step (ms) |"),
        ("bf16_step.py", "| student | batch | float32 step"),
        ("data_loading.py", "| path | clips/s"),
        ("extract_throughput.py", "| teacher | "),
        ("stream_latency.py", "| contender | block (ms) |"),
    ],
)
def test_every_other_benchmark_runs_its_smoke_mode(name, table):
    out = smoke(name)
    assert out.startswith("torch ") and table in out
