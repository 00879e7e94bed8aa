"""Opt-in (`make test-slow`): the full demo, as `make demo` runs it (≈10 min on 2 cores)."""

import json

import pytest

from eastmir.demo import DEFAULT_TEACHER, run_demo


@pytest.mark.slow
def test_full_demo_baseline_is_informative(tmp_path):
    run_demo(tmp_path, progress=False)
    results = {
        d: json.loads((tmp_path / "runs" / d / "metrics.json").read_text())["test"]
        for d in ("baseline", f"teacher_lr-{DEFAULT_TEACHER}", f"east_final-{DEFAULT_TEACHER}")
    }
    # the synth task is calibrated to be far from chance and from the ceiling
    assert 0.5 < results["baseline"]["mAP"] < 0.9
    assert results[f"teacher_lr-{DEFAULT_TEACHER}"]["mAP"] > 0.5
