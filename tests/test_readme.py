"""The README's first-runs flow, run exactly as written (prepare → extract → fit → report),
with a non-default dataset root and options."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def first_runs_block() -> list[str]:
    section = README.read_text().split("## Your first runs", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_flow_runs_as_written(tmp_path):
    commands = first_runs_block()
    assert [c.split()[1] for c in commands] == ["data", "extract", "fit", "fit", "report"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    outputs = []
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done.stdout)
    manifest = json.loads((tmp_path / "data" / "synth-small" / "manifest.json").read_text())
    assert len(manifest["clips"]) == 120 and manifest["clips"][0]["duration"] == 3.0
    assert not (tmp_path / "work" / "data").exists()  # fit used data.root, rendered nothing of its own
    for run in ("baseline", "east_final"):
        metrics = json.loads((tmp_path / "work" / "runs" / run / "metrics.json").read_text())
        assert sum(metrics["n_clips"].values()) == 120 and metrics["epochs"] == 4
    rows = [line for line in outputs[-1].splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == ["System", "Baseline", "EAsT_Final"]
    assert all(0.0 <= float(cell) <= 1.0 for r in rows[1:] for cell in r.split("|")[4:7])


def test_the_python_config_example_says_what_it_does(tmp_path, monkeypatch):
    """The `## Configs` Python block, run as written (``pipeline.fit`` recorded instead of training): the values
    its comment states, and the changed copy it trains."""
    from eastmir import pipeline

    section = README.read_text().split("## Configs", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    block = "\n".join(line.removeprefix("  ") for line in block.splitlines())
    fitted = []
    monkeypatch.setattr(pipeline, "fit", fitted.append)
    monkeypatch.chdir(tmp_path)
    lines = block.splitlines()
    shown = next(line for line in lines if line.startswith("config.data.batch_size"))
    expression, _, comment = shown.partition("#")
    scope: dict = {}
    exec("\n".join(line for line in lines if line != shown), scope)
    assert eval(expression, scope) == eval(comment, scope)
    (config,) = fitted
    assert config.seed == 1 and config.name == "east_final-seed1" and config.trainer.max_epochs == 5
