"""Opt-in (`make test-slow`): the full demo, as `make demo` runs it (≈12 min on 2 cores)."""

import json

import pytest

from eastmir.demo import DEFAULT_TEACHER, DEMO_FRACTION, DEMO_SEEDS, run_demo


@pytest.mark.slow
def test_full_demo_is_informative_and_paired(tmp_path):
    text = run_demo(tmp_path, progress=False)
    runs = tmp_path / "runs"
    for seed in DEMO_SEEDS:
        share = f"frac{DEMO_FRACTION:g}-seed{seed}"
        baseline = json.loads((runs / f"baseline-{share}" / "metrics.json").read_text())["test"]
        probe = json.loads((runs / f"teacher_lr-{DEFAULT_TEACHER}-{share}" / "metrics.json").read_text())["test"]
        # the synth task is calibrated to be far from chance and from the ceiling
        assert 0.3 < baseline["mAP"] < 0.9 and probe["mAP"] > 0.4
    assert f"of {len(DEMO_SEEDS)} |" in text  # the paired differences name how many seeds are above
