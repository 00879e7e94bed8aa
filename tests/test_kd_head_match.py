"""KD reads a TeacherLR head only from a run on the same data, clips, classes and teacher; anything else is refused
in one line naming both runs and the difference, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eastmir import pipeline
from eastmir.config import load_config
from eastmir.errors import RunError

QUICK = ["trainer.max_epochs=1", "data.num_workers=0", "data.batch_size=8"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory, aisfx_teacher):
    """A finished TeacherLR run (aiSFX) on a rendered set of 24 clips, and a second set rendered differently."""
    base = tmp_path_factory.mktemp("kdmatch")
    ours = pipeline.prepare("synth", base / "ours", {"n_clips": 24, "clip_seconds": 2.0, "seed": 21}, progress=False)
    other = pipeline.prepare("synth", base / "other", {"n_clips": 24, "clip_seconds": 2.0, "seed": 22}, progress=False)
    work = base / "work"
    config = load_config("synth/teacher_lr", [f"data.root={ours.root}", "name=probe", *QUICK], workdir=work)
    run = pipeline.fit(config, progress=False)
    return ours, other, work, run


def kd(probe, *overrides):
    ours, _, work, run = probe
    settings = [f"data.root={ours.root}", f"distillation.kd.teacher_run={run}", "name=kd", *QUICK, *overrides]
    return load_config("synth/kd", settings, workdir=work)


def refusal(config) -> str:
    with pytest.raises(RunError) as err:
        pipeline.fit(config, progress=False)
    message = str(err.value)
    assert "\n" not in message and f"KD of run {config.name} reads the TeacherLR run " in message
    checkpoints = Path(config.workdir) / "runs" / config.name / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # refused before any training
    return message


def test_a_head_trained_on_another_dataset_is_refused(probe):
    _, other, _, run = probe
    message = refusal(kd(probe, f"data.root={other.root}", "name=kd-other"))
    assert f"reads the TeacherLR run {run}, which trained on another dataset (its " in message


def test_a_head_trained_on_clips_outside_this_runs_training_split_is_refused(probe):
    message = refusal(kd(probe, "data.train_fraction=0.5", "name=kd-half"))  # 17 training clips, 9 kept
    assert "trained on clips outside this run's training clips (its train_fraction 1, subset_seed 0; " in message
    assert message.endswith(
        "this run's 0.5, 0); train a TeacherLR run on this run's data and teacher and point "
        "distillation.kd.teacher_run at it"
    )


def test_a_head_of_another_subset_seed_is_refused(probe, tmp_path):
    ours, _, work, _ = probe
    other_seed = load_config(
        "synth/teacher_lr",
        [f"data.root={ours.root}", "name=probe-seed1", "data.train_fraction=0.5", "data.subset_seed=1", *QUICK],
        workdir=work,
    )
    seed1 = pipeline.fit(other_seed, progress=False)
    message = refusal(kd(probe, f"distillation.kd.teacher_run={seed1}", "data.train_fraction=0.75", "name=kd-seed"))
    assert "(its train_fraction 0.5, subset_seed 1; this run's 0.75, 0)" in message


def test_a_head_of_a_nested_smaller_subset_is_accepted(probe, tmp_path):
    ours, _, work, _ = probe
    quarter = load_config(
        "synth/teacher_lr",
        [f"data.root={ours.root}", "name=probe-half", "data.train_fraction=0.5", *QUICK],
        workdir=work,
    )
    half_run = pipeline.fit(quarter, progress=False)
    run = pipeline.fit(kd(probe, f"distillation.kd.teacher_run={half_run}", "name=kd-full"), progress=False)
    assert json.loads((run / "metrics.json").read_text())["system"] == "KD"


def test_a_head_with_other_classes_is_refused(probe):
    _, _, _, run = probe
    metrics = run / "metrics.json"
    saved = metrics.read_text()
    blob = json.loads(saved)
    blob["classes"] = list(reversed(blob["classes"]))
    metrics.write_text(json.dumps(blob))
    try:
        assert "has other classes or another order (" in refusal(kd(probe, "name=kd-classes"))
    finally:
        metrics.write_text(saved)


def test_a_head_of_another_teacher_is_refused(probe):
    message = refusal(kd(probe, "teacher={name: musicnn}", "name=kd-musicnn"))
    assert 'probed another teacher or settings ({"name": "aisfx"}, not {"name": "musicnn"' in message
