"""Stopping rules that fit small data: no early stop and no learning-rate cut before ``trainer.min_steps``; a run
whose best validation score stays at chance level says so and is left out of comparisons."""

from __future__ import annotations

import json

import pytest
import torch

from eastmir import pipeline
from eastmir.config import load_config
from eastmir.reporting.grid import load_rows
from eastmir.reporting.tables import markdown_table, read_runs
from eastmir.training.evaluation import is_stalled


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop") / "synth"
    return pipeline.prepare("synth", root, {"n_clips": 24, "clip_seconds": 2.0, "seed": 31}, progress=False)


def baseline(tiny, workdir, *overrides):
    settings = [f"data.root={tiny.root}", "data.num_workers=0", "data.batch_size=8", *overrides]
    return load_config("synth/baseline", settings, workdir=workdir)


def last_lr(run) -> float:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return state["optimizer_states"][0]["param_groups"][0]["lr"]


def test_early_stopping_does_not_act_before_min_steps(tiny, tmp_path):
    """At a rate too small to improve anything, patience 0 stops a run after its second epoch; with min_steps above
    what four epochs take, it trains all four."""
    still = ["optimizer.lr=1e-12", "trainer.early_stop_patience=0", "scheduler.patience=100", "trainer.max_epochs=4"]
    free = pipeline.fit(baseline(tiny, tmp_path, "name=free", *still), progress=False)
    held = pipeline.fit(baseline(tiny, tmp_path, "name=held", "trainer.min_steps=1000", *still), progress=False)
    assert json.loads((free / "metrics.json").read_text())["epochs"] == 2
    assert json.loads((held / "metrics.json").read_text())["epochs"] == 4


def test_a_stop_asked_before_min_steps_is_asked_again_after_it():
    """Patience runs out at step 30, before min_steps 100: no stop. The loss improves at step 100, so the run goes
    on, and stops when patience runs out again (step 120), not at min_steps (where Lightning's own min_steps would
    have ended it, the stop asked at step 30 still standing)."""
    from types import SimpleNamespace

    from eastmir.training.trainer import EarlyStoppingFrom

    stop = EarlyStoppingFrom(100, monitor="val_loss", mode="min", patience=2)
    trainer = SimpleNamespace(
        callback_metrics={},
        global_step=0,
        should_stop=False,
        fast_dev_run=False,
        current_epoch=0,
        strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision),
    )
    stopped_at = []
    for step, loss in [(10, 1.0), (20, 1.1), (30, 1.2), (40, 1.3), (100, 0.5), (110, 0.6), (120, 0.7), (130, 0.8)]:
        trainer.global_step, trainer.callback_metrics = step, {"val_loss": torch.tensor(loss)}
        stop._run_early_stopping_check(trainer)
        if trainer.should_stop:
            stopped_at.append(step)
            trainer.should_stop = False
    assert stopped_at == [120, 130]
    trainer.global_step, trainer.callback_metrics = 5, {"val_loss": torch.tensor(float("nan"))}
    stop._run_early_stopping_check(trainer)
    assert trainer.should_stop  # a non-finite loss stops at once, min_steps or not


def test_the_plateau_does_not_cut_the_rate_before_min_steps():
    """EastSystem's scheduler step, on a plateau of patience 0 fed a constant validation loss: the rate stays until
    min_steps optimizer steps are done, then is cut after every epoch without a lower loss."""
    from types import SimpleNamespace

    from eastmir.training.system import EastSystem

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    system = SimpleNamespace(config=SimpleNamespace(trainer=SimpleNamespace(min_steps=30)), global_step=0)
    rates = []
    for step in (10, 20, 29, 30, 40, 50):
        system.global_step = step
        EastSystem.lr_scheduler_step(system, scheduler, torch.tensor(1.0))
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]  # from step 30 on: the first epoch sets the best, then cuts


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """A single-label folder dataset nothing can be learned from: 300 clips of white noise (30 to validate on),
    6 classes."""
    import numpy as np
    import soundfile as sf

    root = tmp_path_factory.mktemp("noise")
    (root / "audio").mkdir()
    rng = np.random.default_rng(5)
    lines = ["path,label"]
    for i in range(300):
        sf.write(root / "audio" / f"n{i}.wav", (rng.standard_normal(16000) * 0.1).astype(np.float32), 16000)
        lines.append(f"audio/n{i}.wav,class{i % 6}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return pipeline.prepare("folder", root, {"csv": "labels.csv"}, progress=False)


def test_a_run_at_chance_level_is_stalled_said_and_left_out_of_comparisons(noise, tmp_path, capsys):
    settings = [f"data.root={noise.root}", "data.num_workers=0", "name=stuck", "optimizer.lr=1e-12"]
    config = load_config("folder/baseline", [*settings, "trainer.max_epochs=2"], workdir=tmp_path)
    run = pipeline.fit(config, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stalled"] is True and metrics["chance"] == pytest.approx(1 / 6, abs=0.1)
    out = capsys.readouterr().out
    assert "warning: run stuck stalled: its best validation accuracy " in out
    assert "(trainer.min_steps, now 1000) or another learning rate (optimizer.lr, now 1e-12)" in out  # folder
    assert "(stalled: best validation accuracy" in markdown_table(read_runs([run]))
    rows, lines = load_rows([run])
    assert rows == [] and "left out of means and comparisons" in lines[0]


def test_chance_level_by_hand():
    assert is_stalled(0.12, 0.10, 250) and not is_stalled(0.125, 0.10, 250)  # two points above chance
    assert is_stalled(0.14, 0.10, 20) and not is_stalled(0.16, 0.10, 20)  # twenty clips: one clip is 0.05
    assert not is_stalled(0.10, 0.10, 19)  # too few clips to tell a run that learned from one that did not


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """A learnable single-label set with few steps an epoch: 160 clips of 1 s, 8 classes, each a tone of its own
    pitch at a random level under noise; 112 train (7 steps of 16), 16 valid, 32 test."""
    import numpy as np
    import soundfile as sf

    root = tmp_path_factory.mktemp("tones")
    (root / "audio").mkdir()
    rng = np.random.default_rng(9)
    t = np.arange(16000) / 16000
    lines = ["path,label,split"]
    for i in range(160):
        label = i % 8
        tone = rng.uniform(0.02, 0.2) * np.sin(2 * np.pi * 220 * 2 ** (label / 4) * t + rng.uniform(0, 6.3))
        sf.write(root / "audio" / f"t{i}.wav", (tone + 0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        split = "train" if i < 112 else "valid" if i < 128 else "test"
        lines.append(f"audio/t{i}.wav,pitch{label},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return pipeline.prepare("folder", root, {"csv": "labels.csv"}, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_the_folder_baseline_learns_with_few_steps_an_epoch(tones, tmp_path, seed):
    """The folder recipe's defaults (min_steps, max_epochs) on 7 steps an epoch: well above chance, every seed."""
    settings = [f"data.root={tones.root}", f"seed={seed}", f"name=tones-{seed}", "threads=2"]
    run = pipeline.fit(load_config("folder/baseline", settings, workdir=tmp_path), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] >= 1000 and not metrics["stalled"]
    assert metrics["test"]["accuracy"] >= 0.6, metrics  # chance: 1/8
