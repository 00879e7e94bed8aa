"""Tiny CPU fit runs of each demo system on the session's small synth set."""

import csv
import json
import shutil

import numpy as np
import pytest

from eastmir.data.manifest import Manifest
from eastmir.errors import ConfigError, StoreError
from eastmir.pipeline import fit


@pytest.mark.parametrize("name", ["baseline", "teacher_lr", "east_final"])
def test_fit_smoke_each_demo_system(name, small_synth, small_synth_embeddings, small_config):
    run_dir = fit(small_config(name), progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"mAP", "roc_auc", "f1"}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    assert metrics["n_clips"]["train"] == len(small_synth.split("train"))
    defined = [ap for ap in metrics["test_per_class_ap"].values() if ap is not None]
    assert np.mean(defined) == pytest.approx(metrics["test"]["mAP"], abs=2e-6)  # the test split's, kept by test
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert any(p.name.startswith("best-") and "mAP" in p.name for p in (run_dir / "checkpoints").iterdir())
    if name == "east_final":
        with open(run_dir / "logs" / "version_0" / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))
        reg = [float(r["train_reg_epoch"]) for r in rows if r.get("train_reg_epoch")]
        assert reg and all(0.0 <= v <= 1.0 for v in reg)
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    fit(small_config(name), progress=False)  # finished: not retrained
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp


def test_teacher_lr_on_aisfx_is_clearly_above_chance(small_synth, small_synth_embeddings, small_config):
    cfg = small_config("teacher_lr", "name=teacher_lr_long", "trainer.max_epochs=60", "trainer.early_stop_patience=10")
    metrics = json.loads((fit(cfg, progress=False) / "metrics.json").read_text())
    labels, mask = small_synth.labels(small_synth.split("test"))
    chance = np.mean([labels[mask[:, c], c].mean() for c in range(labels.shape[1]) if labels[mask[:, c], c].any()])
    assert metrics["test"]["mAP"] > chance + 0.2, (metrics["test"], chance)
    assert metrics["test"]["roc_auc"] > 0.6


def test_training_resumes_from_last_checkpoint(small_synth, small_synth_embeddings, small_config):
    cfg = small_config("baseline", "name=resume_check")
    run_dir = fit(cfg, progress=False)
    one = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()  # as if stopped after epoch 1
    two = json.loads((fit(cfg.changed({"trainer": {"max_epochs": 2}}), progress=False) / "metrics.json").read_text())
    assert two["steps"] == 2 * one["steps"]


def corrupt_copy(small_synth, tmp_path, kind):
    root = tmp_path / "broken"
    (root / "audio").mkdir(parents=True)
    clips = list(small_synth.clips)
    for c in clips:
        shutil.copy(small_synth.audio_file(c), root / c.audio_path)
    victim = clips[3]
    path = root / victim.audio_path
    path.write_bytes(b"RIFF0000WAVEgarbage" if kind == "corrupt" else b"")
    Manifest("synth", small_synth.classes, clips, root).save()
    return root, path


@pytest.mark.parametrize("kind", ["corrupt", "empty"])
def test_bad_clip_in_manifest_stops_naming_the_file(small_synth, tmp_path, kind, small_config):
    root, path = corrupt_copy(small_synth, tmp_path, kind)
    cfg = small_config("baseline", f"data.root={root}", workdir=tmp_path)
    with pytest.raises(StoreError, match=path.name):
        fit(cfg, progress=False)


def test_bad_clip_skipped_and_reported_when_asked(small_synth, tmp_path, capsys, small_config):
    root, path = corrupt_copy(small_synth, tmp_path, "corrupt")
    cfg = small_config("baseline", f"data.root={root}", "data.on_error=skip", workdir=tmp_path)
    metrics = json.loads((fit(cfg, progress=False) / "metrics.json").read_text())
    total = sum(metrics["n_clips"].values())
    assert total == len(small_synth.clips) - 1
    out = capsys.readouterr().out
    assert "left out 1 clip(s) that could not be used" in out and "1 " in out and "clip(s) left out" in out
    bad = list((tmp_path / "cache").rglob("failures.json"))
    assert bad and path.name in bad[0].read_text()


def test_fit_with_frequency_jitter_reads_cached_waveforms(small_synth, workdir, small_config):
    cfg = small_config("baseline", "name=jitter", "augment={fmin_jitter: 20, fmax_jitter: 2000, mixup_alpha: 0.3}")
    metrics = json.loads((fit(cfg, progress=False) / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["mAP"] <= 1.0
    assert any((workdir / "cache" / "waveform").glob("waveform16000-*/*.npy"))


def test_max_steps_shorter_than_an_epoch_is_one_line_saying_so(small_synth, small_synth_embeddings, small_config):
    """Early stopping used to demand a val_loss at a train-epoch end that max_steps reached first (a traceback)."""
    cfg = small_config("baseline", "name=one-step", "trainer.max_steps=1")
    with pytest.raises(
        ConfigError,
        match=r"^trainer.max_steps: 1 step\(s\) ended training before the first "
        r"validation \(an epoch here has 4 steps\)",
    ):
        fit(cfg, progress=False)
    cfg = small_config("baseline", "name=one-epoch", "trainer.max_steps=4")  # exactly one epoch: validated
    metrics = json.loads((fit(cfg, progress=False) / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["best_checkpoint"].startswith("checkpoints/best-epoch000")


def test_a_run_can_monitor_the_total_validation_loss(small_synth, small_synth_embeddings, small_config):
    """EAsT_Final with ``trainer.validation_loss=total`` end to end: the validation batches carry the teacher
    embeddings the total needs (the run stops otherwise), and val_loss is logged every epoch (its value is
    checked against the loss terms in test_system.py)."""
    run_dir = fit(small_config("east_final", "name=total_val", "trainer.validation_loss=total"), progress=False)
    with open(run_dir / "logs" / "version_0" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val_loss")]
    assert rows and all(float(r["val_loss"]) > 0 for r in rows)


def test_a_bf16_mixed_run_trains_tests_and_keeps_float32_weights(small_synth, small_synth_embeddings, small_config):
    import torch

    from eastmir.inference import load_run
    from eastmir.training.checkpoints import read_checkpoint

    run_dir = fit(small_config("east_final", "name=bf16_run", "trainer.precision=bf16-mixed"), progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    run = load_run(run_dir)
    x = torch.randn(2, 96, 126, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", torch.bfloat16):
        half = run.logits(x).float()
    assert torch.allclose(half, run.logits(x), atol=5e-2)
