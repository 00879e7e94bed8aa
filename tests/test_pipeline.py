"""The pipeline layer: prepared data referenced by data.root, teacher sources, validation at the boundary."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from eastmir import pipeline
from eastmir.cli import main
from eastmir.config import load_config
from eastmir.errors import ManifestError, StoreError, TrainingError


def test_fit_uses_the_prepared_root_and_never_rewrites_it(tmp_path, small_config):
    """The issue's first case: `data prepare synth --root DIR --set n_clips=… clip_seconds=3` then fit
    rendered its own 800 clips; pointing data.root at DIR was refused, also for 3 vs 3.0."""
    root = tmp_path / "elsewhere"
    assert (
        main(
            [
                "data",
                "prepare",
                "synth",
                "--root",
                str(root),
                "--no-progress",
                "--set",
                "n_clips=24",
                "clip_seconds=3",
                "seed=3",
            ]
        )
        == 0
    )
    again = pipeline.prepare("synth", root, {"n_clips": 24, "clip_seconds": 3.0, "seed": 3}, False)  # 3 == 3.0
    assert len(again.clips) == 24
    manifest = root / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    run = pipeline.fit(small_config("baseline", f"data.root={root}", "name=mine", workdir=tmp_path), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(metrics["n_clips"].values()) == 24
    assert manifest.stat().st_mtime_ns == stamp  # read, not rewritten
    assert not (tmp_path / "data").exists()  # nothing rendered at the default root
    assert metrics["classes"] == json.loads(manifest.read_text())["classes"]


def test_fit_without_a_prepared_dataset_says_what_to_run(tmp_path, small_config):
    with pytest.raises(ManifestError, match=r"run `eastmir data prepare synth --root .*` first"):
        pipeline.fit(small_config("baseline", workdir=tmp_path), progress=False)


def test_features_command_does_not_import_lightning(small_synth, workdir):
    code = (
        "import sys; from eastmir.cli import main; "
        f"rc = main(['features', '--config', 'synth/baseline', '--workdir', {str(workdir)!r}, '--no-progress']); "
        "print('LIGHTNING', 'lightning' in sys.modules, rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LIGHTNING False 0" in out and "logmel:" in out


def write_embeddings(folder, manifest, dim=8, frames=3, seed=0):
    """One (frames, dim) file per clip: a noisy copy of the clip's label vector, so they carry information."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for clip in manifest.clips:
        n = frames(clip) if callable(frames) else frames
        base = np.resize(clip.labels, dim)
        np.save(folder / f"{clip.clip_id}.npy", (base + 0.1 * rng.standard_normal((n, dim))).astype(np.float32))
    return folder


def test_precomputed_import_reports_every_bad_file(small_synth, tmp_path, capsys):
    folder = write_embeddings(tmp_path / "emb", small_synth)
    clips = [c.clip_id for c in small_synth.clips]
    (folder / f"{clips[0]}.npy").unlink()
    np.save(folder / f"{clips[1]}.npy", np.full((3, 8), np.nan, np.float32))
    np.save(folder / f"{clips[2]}.npy", np.ones((3, 5), np.float32))
    (folder / f"{clips[3]}.npy").write_bytes(b"not numpy")
    args = [
        "extract",
        "--teacher",
        "precomputed",
        "--dataset",
        str(small_synth.root),
        "--workdir",
        str(tmp_path),
        "--no-progress",
        "--set",
        f"path={folder}",
        "dim=8",
        "id=mine",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: 4 clip(s) could not be used") and err.count("\n") == 1
    failures = json.loads(next((tmp_path / "cache").rglob("failures.json")).read_text())
    assert set(failures) == set(clips[:4])
    assert "emb/synth00.npy: file not found" in failures[clips[0]] and "NaN" in failures[clips[1]]
    assert "shape (3, 5), expected (frames, 8)" in failures[clips[2]] and "not a readable .npy" in failures[clips[3]]
    assert main([*args, "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert f"mine (dim 8, one vector per clip): 0 stored now, {len(clips) - 4} already stored, 4 left out" in out


def precomputed_config(small_config, folder, *extra, workdir):
    teacher = f"teacher={{name: precomputed, path: {folder}, dim: 8, frame_seconds: 0.5, id: mine}}"
    return small_config("east_final", teacher, *extra, workdir=workdir)


def test_a_nan_embedding_stops_fit_before_training(small_synth, tmp_path, small_config):
    """The issue's case: one NaN in a precomputed file turned 44 of 86 weight tensors into NaN, silently."""
    folder = write_embeddings(tmp_path / "emb", small_synth)
    victim = small_synth.split("train")[0].clip_id
    emb = np.load(folder / f"{victim}.npy")
    emb[1, 2] = np.nan
    np.save(folder / f"{victim}.npy", emb)
    cfg = precomputed_config(small_config, folder, f"data.root={small_synth.root}", workdir=tmp_path)
    with pytest.raises(StoreError, match=rf"{victim}.npy: 1 of 24 values are NaN"):
        pipeline.fit(cfg, progress=False)
    assert not (tmp_path / "runs").exists()
    skip = precomputed_config(
        small_config, folder, f"data.root={small_synth.root}", "data.on_error=skip", "name=skip", workdir=tmp_path
    )
    metrics = json.loads((pipeline.fit(skip, progress=False) / "metrics.json").read_text())
    assert metrics["left_out"]["train"] == 1 and np.isfinite(list(metrics["test"].values())).all()


def test_embeddings_of_different_lengths_batch_together(small_synth, tmp_path, small_config):
    folder = write_embeddings(tmp_path / "emb", small_synth, frames=lambda c: 2 + int(c.clip_id[-1]) % 3)
    cfg = precomputed_config(small_config, folder, f"data.root={small_synth.root}", workdir=tmp_path)
    run = pipeline.fit(cfg, progress=False)
    assert np.isfinite(list(json.loads((run / "metrics.json").read_text())["test"].values())).all()


def test_a_non_finite_loss_stops_naming_the_step_and_clips(small_synth, small_synth_embeddings, tmp_path, small_config):
    from lightning.pytorch.callbacks import Callback

    class Poison(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 1:
                with torch.no_grad():
                    next(module.student.parameters()).fill_(float("nan"))

    cfg = small_config(
        "east_final",
        f"data.root={small_synth.root}",
        f"cache_dir={small_synth.root.parent.parent}/cache",
        workdir=tmp_path,
    )
    with pytest.raises(TrainingError, match=r"step 1 \(epoch 0\): the training loss is not finite .* clips synth"):
        pipeline.fit(cfg, progress=False, callbacks=[Poison()])
    assert not (tmp_path / "runs" / "east_final" / "metrics.json").exists()


def test_downloaded_weights_are_shared_across_workdirs(small_synth, tmp_path, monkeypatch):
    from eastmir.teachers import weights
    from eastmir.teachers.aisfx import AISFX_WEIGHTS, AisfxTeacher

    cache = tmp_path / "shared-cache"
    (cache / "weights").mkdir(parents=True)
    member = AISFX_WEIGHTS.files[0][0]
    shutil.copy(weights.fetch_wheel_member(AISFX_WEIGHTS), cache / "weights" / AISFX_WEIGHTS.cached_name(member))
    monkeypatch.setenv("EASTMIR_CACHE", str(cache))

    def no_download(*args, **kwargs):
        raise AssertionError("the weights were downloaded again")

    monkeypatch.setattr(weights.subprocess, "run", no_download)
    few = pipeline.prepare("synth", tmp_path / "few", {"n_clips": 2, "clip_seconds": 1.0}, False)
    for work in ("one", "two"):
        assert (
            main(
                [
                    "extract",
                    "--teacher",
                    "aisfx",
                    "--dataset",
                    str(few.root),
                    "--workdir",
                    str(tmp_path / work),
                    "--no-progress",
                ]
            )
            == 0
        )
        assert AisfxTeacher().weights_sha256 == AISFX_WEIGHTS.files[0][1]
    assert not list((tmp_path / "one").rglob("*.pth"))  # no weights inside a work directory


def test_a_config_naming_another_dataset_than_the_root_holds_is_refused(small_synth, tmp_path):
    from eastmir.errors import ConfigError

    cfg = load_config("openmic/baseline", [f"data.root={small_synth.root}"], workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"holds a 'synth' dataset but data\.dataset is 'openmic'"):
        pipeline.open_dataset(cfg)


def test_a_run_does_not_depend_on_what_the_store_already_held(
    small_synth, small_synth_embeddings, tmp_path, small_config
):
    """The model is seeded right before it is built: building the teacher to fill an empty store
    used to consume random numbers first, so TeacherLR trained differently on a rerun."""
    warm = small_config("teacher_lr", "name=warm", "trainer.max_epochs=3")  # store already filled
    cold = small_config("teacher_lr", "name=cold", "trainer.max_epochs=3", f"cache_dir={tmp_path / 'empty'}")
    results = [json.loads((pipeline.fit(c, progress=False) / "metrics.json").read_text())["test"] for c in (warm, cold)]
    assert results[0] == results[1]
    assert any((tmp_path / "empty").rglob("*.npy"))  # the cold run did extract
