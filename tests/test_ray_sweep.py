"""Opt-in (`make test-slow`, `pip install 'eastmir[ray]'`): a sweep run by Ray Tune on a local Ray instance."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_a_sweep_under_ray_writes_the_runs_a_sequential_sweep_would(small_synth, workdir, tmp_path):
    pytest.importorskip("ray.tune", reason="the ray extra is not installed: pip install 'eastmir[ray]'")
    import ray

    from eastmir.experiments.sweep import parse_grid, sweep

    common = ["trainer.max_epochs=1", "data.batch_size=16", f"cache_dir={workdir / 'cache'}"]
    common.append(f"data.root={small_synth.root}")

    def run_sweep(**engine):
        return sweep("synth/baseline", parse_grid(["seed=0,1"]), tmp_path, common, progress=False, name="ray", **engine)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        best, settings, _ = run_sweep(engine="ray")
    finally:
        ray.shutdown()
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["ray-seed0", "ray-seed1"]
    first = json.loads((tmp_path / "runs" / "ray-seed0" / "metrics.json").read_text())
    # the same grid again, sequentially: nothing is retrained, the same choice comes out
    again, _, _ = run_sweep()
    assert json.loads((tmp_path / "runs" / "ray-seed0" / "metrics.json").read_text()) == first
    assert again.test() == best.test() and len(settings[0].runs) == 2
