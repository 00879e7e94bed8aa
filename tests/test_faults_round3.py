"""Faults of the third hostile trial (issue 24), each with the input that showed it and the line a user now sees:
a diverged run is never a result, no flag is dropped, nothing beside the output is overwritten."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from eastmir import pipeline
from eastmir.cli import build_parser, main
from eastmir.config import load_config
from eastmir.errors import ManifestError, RunError, TrainingError
from eastmir.rundir import RunDirectory


def one_error_line(err: str) -> str:
    """The single ``eastmir: error: …`` line of a refused command (and nothing else on stderr but notes)."""
    lines = [line for line in err.splitlines() if line.startswith("eastmir: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def copy_run(run, to):
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


# ------------------------------------------------------------------ 1. a diverged run is never a result


def test_a_diverged_run_stops_naming_the_epoch_writes_no_result_and_report_shows_it_failed(
    small_synth, small_synth_embeddings, workdir, capsys
):
    argv = ["fit", "--config", "synth/baseline", "--workdir", str(workdir), "--no-progress"]
    argv += ["--set", "name=diverged", "optimizer.lr=1e30", "trainer.max_epochs=2"]
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "epoch 0" in line and "not finite" in line and "lower optimizer.lr" in line
    run = RunDirectory(workdir / "runs" / "diverged")
    assert not run.metrics_file.exists()  # nothing that looks like a result
    assert "not finite" in run.read_failure()
    assert main(["report", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "(failed: " in out and "not finite" in out


def test_a_non_finite_training_loss_stops_training(small_synth, small_synth_embeddings, workdir, monkeypatch):
    """The README's claim "a non-finite training loss stops training", tried with a loss that turns NaN."""
    from eastmir.training.system import EastSystem

    real = EastSystem.losses

    def poisoned(self, batch):
        terms = real(self, batch)
        return {**terms, "loss": terms["loss"] * float("nan")}

    monkeypatch.setattr(EastSystem, "losses", poisoned)
    config = load_config("synth/baseline", ["name=nan_loss", "trainer.max_epochs=1"], workdir=workdir)
    with pytest.raises(TrainingError, match=r"step 0 \(epoch 0\): the training loss is not finite"):
        pipeline.fit(config, progress=False)
    assert not RunDirectory(workdir / "runs" / "nan_loss").finished


def test_predict_and_export_refuse_a_run_whose_weights_are_not_finite(short_run, small_synth, tmp_path, capsys):
    broken = copy_run(short_run, tmp_path / "broken")
    best = RunDirectory(broken).best_checkpoint()
    state = torch.load(best, weights_only=True)
    state.pop("eastmir_content_sha256", None)
    name = next(k for k, v in state["state_dict"].items() if v.is_floating_point() and v.ndim > 1)
    state["state_dict"][name][0] = float("nan")
    torch.save(state, best)
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    for argv in (["predict", str(broken), clip], ["export", str(broken), "--format", "torchscript"]):
        assert main(argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "hold NaN or infinite values" in line and "the training diverged" in line


def test_predictions_are_strict_json():
    from eastmir.reporting.predictions import _jsonl

    class Bad:
        def as_dict(self, curve):
            return {"probabilities": {"a": float("nan")}}

    with pytest.raises(ValueError):  # never a NaN that a strict parser rejects
        _jsonl([Bad()], 3, False)


# ------------------------------------------------------------------ 2. repeated flags merge in order


def test_set_and_config_given_twice_keep_both_in_order(workdir, tmp_path):
    lr = tmp_path / "lr.yaml"
    lr.write_text("optimizer: {lr: 0.05}\n")
    args = build_parser().parse_args(
        ["fit", "--config", str(lr), "--config", "synth/baseline", "--set", "optimizer.lr=0.02", "--set", "seed=3"]
    )
    assert args.config == [str(lr), "synth/baseline"] and args.overrides == ["optimizer.lr=0.02", "seed=3"]
    config = load_config(args.config, args.overrides, workdir=workdir)
    assert config.optimizer.lr == 0.02 and config.seed == 3  # both --set, the last file's keys, then the sets
    config = load_config(["synth/baseline", str(lr)], [], workdir=workdir)
    assert config.optimizer.lr == 0.05  # --config files merge in order: the later one wins
    args = build_parser().parse_args(["fit", "--config", "synth/baseline", "--set", "seed=1", "--set", "seed=2"])
    assert load_config(args.config, args.overrides, workdir=workdir).seed == 2


# ------------------------------------------------------------------ 3. export: one file, no file replaced


def test_export_never_replaces_a_user_file_and_writes_one_self_contained_onnx(short_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    notes = tmp_path / "model.md"
    notes.write_text("my own notes\n")
    assert main(["export", str(short_run), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(notes) in line and "eastmir did not write" in line and "--overwrite" in line
    assert notes.read_text() == "my own notes\n" and not out.exists()
    notes.unlink()
    out.write_bytes(b"a user's model")
    assert main(["export", str(short_run), "--out", str(out)]) == 2
    assert str(out) in one_error_line(capsys.readouterr().err) and out.read_bytes() == b"a user's model"
    # in a fresh process, as a user runs it: torch's exporter notes (torchvision, LeafSpec) stay off the screen
    command = [sys.executable, "-m", "eastmir", "export", str(short_run), "--out", str(out), "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == "" and "torchvision" not in done.stdout and "LeafSpec" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.md", "model.onnx"]  # no model.onnx.data
    card = (tmp_path / "model.md").read_text()
    assert "eastmir.audio.load_audio(path, 16000)" in card and "soxr" in card and "encoder delay" in card
    # one file: it runs alone in another folder
    import onnxruntime as ort

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.move(out, alone / "m.onnx")
    session = ort.InferenceSession(str(alone / "m.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"waveform": np.zeros((1, 48000), np.float32)})[0]
    assert probabilities.shape[0] == 1 and np.isfinite(probabilities).all()


def test_export_into_the_run_folder_twice_replaces_only_its_own_files(short_run, tmp_path, capsys):
    run = copy_run(short_run, tmp_path / "run")
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert main(["export", str(run), "--format", "torchscript"]) == 0  # its own, unchanged file: replaced
    (run / "export" / "model.md").write_text("edited by hand\n")
    capsys.readouterr()
    assert main(["export", str(run), "--format", "torchscript"]) == 2
    assert "model.md" in one_error_line(capsys.readouterr().err)
    assert (run / "export" / "model.md").read_text() == "edited by hand\n"


def test_the_card_s_preprocessing_is_the_one_call_predict_makes(tmp_path):
    from eastmir.audio import DECODER, load_audio, preprocessing

    text = preprocessing(22050)
    assert "load_audio(path, 22050)" in text and DECODER in text
    sf.write(tmp_path / "x.wav", (0.5 * np.sin(np.arange(44100) / 10)).astype(np.float32), 44100)
    assert load_audio(tmp_path / "x.wav", 22050).shape == (22050,)


# ------------------------------------------------------------------ 4. a foreign last.ckpt is refused


def test_a_last_ckpt_copied_from_another_run_is_refused(short_run, small_synth, workdir, capsys):
    other = load_config("synth/baseline", ["name=adopter", "trainer.max_epochs=2", "seed=5"], workdir=workdir)
    target = RunDirectory(workdir / "runs" / "adopter")
    target.checkpoints.mkdir(parents=True)
    shutil.copy(RunDirectory(short_run).last_checkpoint, target.last_checkpoint)
    with pytest.raises(RunError) as info:
        pipeline.fit(other, progress=False)
    message = str(info.value)
    assert "written by run 'short_run'" in message and "not by this run" in message and "--overwrite" in message
    assert not target.finished


def test_a_checkpoint_of_another_class_count_is_refused_in_one_line(tmp_path):
    from eastmir.rundir import RunDirectory
    from eastmir.training.checkpoints import check_resumable

    run = RunDirectory(tmp_path / "mine")
    path = run.last_checkpoint
    path.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": {"config": {"name": "mine"}, "num_classes": 3}, "state_dict": {}}, path)
    state = check_resumable(path)
    with pytest.raises(RunError, match=r"3 classes against 17 here, not by this run"):
        run.check_owner(path, state, "identity", 17)
    run.check_owner(path, state, "identity", 3)  # a checkpoint from before identities, of this run: resumed


# ------------------------------------------------------------------ 5. class-column variants


def table(root, header, rows, n=12, rate=16000):
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(root / "audio" / f"c{i}.wav", np.full(rate, 0.01 * (i + 1), np.float32), rate)
    text = "\n".join([header, *(rows[i % len(rows)].format(i=i, root=root) for i in range(n))]) + "\n"
    (root / "labels.csv").write_text(text)


def test_class_columns_that_differ_only_in_case_or_spacing_are_refused(tmp_path):
    table(tmp_path, "path,piano,Piano ,voice,drums", ["audio/c{i}.wav,1,0,1,0", "audio/c{i}.wav,0,1,0,1"])
    with pytest.raises(ManifestError, match=r"class columns: names that differ only in case or spacing") as info:
        pipeline.prepare("folder", tmp_path, {"check_audio": False}, progress=False)
    assert "'Piano' / 'piano'" in str(info.value)


# ------------------------------------------------------------------ 6. predict without metrics.json


def test_predict_without_metrics_json_says_which_thresholds_it_uses(short_run, small_synth, tmp_path, capsys):
    bare = copy_run(short_run, tmp_path / "bare")
    (bare / "metrics.json").unlink()
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    assert main(["predict", str(bare), clip, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "eastmir: warning: " in err and "no metrics.json" in err and "probability ≥ 0.5" in err
    assert main(["predict", str(short_run), clip, "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------ 7. report keys cells by settings


def fake_run(folder, name, system, seed, score, epochs=200, student="mobile_fcn", teacher=None):
    run = folder / name
    run.mkdir(parents=True)
    config = {
        "name": name,
        "system": system,
        "seed": seed,
        "student": {"name": student},
        "teacher": teacher,
        "data": {"dataset": "synth", "train_fraction": 1.0, "subset_seed": seed},
        "trainer": {"max_epochs": epochs},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"name": name, "system": system, "student": student, "test": {"mAP": score}, "best_checkpoint": "x"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_report_keys_cells_by_the_settings_that_differ_and_names_duplicates(tmp_path):
    from eastmir.reporting.grid import cells, load_rows
    from eastmir.reporting.paired import paired_differences

    runs = tmp_path / "runs"
    probe = {"name": "aisfx"}
    for seed in range(3):
        fake_run(runs, f"base-{seed}", "Baseline", seed, 0.5)
        fake_run(runs, f"lr8-{seed}", "TeacherLR", seed, 0.6, 8, "linear_probe", probe)
        fake_run(runs, f"lr200-{seed}", "TeacherLR", seed, 0.9, 200, "linear_probe", probe)
    fake_run(runs, "lr200-again-0", "TeacherLR", 0, 0.1, 200, "linear_probe", probe)  # a second run of seed 0
    rows, skipped = load_rows(sorted(runs.iterdir()))
    by_system = {c.system: c for c in cells(rows)}
    assert sorted(by_system) == ["Baseline", "TeacherLR [trainer.max_epochs=200]", "TeacherLR [trainer.max_epochs=8]"]
    assert [len(c.runs) for c in by_system.values()] == [3, 3, 3]  # never six seeds, never a seed twice
    assert by_system["TeacherLR [trainer.max_epochs=8]"].metric("mAP")[0] == pytest.approx(0.6)
    assert by_system["TeacherLR [trainer.max_epochs=200]"].metric("mAP")[0] == pytest.approx(0.9)
    (duplicate,) = skipped
    assert "lr200-again-0" in duplicate and "a duplicate" in duplicate and "lr200-0" in duplicate
    pairs = {p.system: p for p in paired_differences(rows)}
    assert pairs["TeacherLR [trainer.max_epochs=200]"].differences == pytest.approx({0: 0.4, 1: 0.4, 2: 0.4})
    assert pairs["TeacherLR [trainer.max_epochs=8]"].differences == pytest.approx({0: 0.1, 1: 0.1, 2: 0.1})


# ------------------------------------------------------------------ 8. the probe keeps its own epochs


def test_a_study_s_trainer_override_does_not_reach_the_probe_unless_named(workdir):
    from eastmir.config import probe_note

    probe = load_config("synth/teacher_lr", ["trainer.max_epochs=8"], workdir=workdir, shared=True)
    student = load_config("synth/east_kd", ["trainer.max_epochs=8"], workdir=workdir, shared=True)
    assert probe.trainer.max_epochs == 200 and student.trainer.max_epochs == 8
    named = ["trainer.max_epochs=8", "teacher_lr.trainer.max_epochs=50"]
    assert load_config("synth/teacher_lr", named, workdir=workdir, shared=True).trainer.max_epochs == 50
    assert load_config("synth/east_kd", named, workdir=workdir, shared=True).trainer.max_epochs == 8
    # fit of the probe itself: the user names its config, so the override is for it
    assert load_config("synth/teacher_lr", ["trainer.max_epochs=8"], workdir=workdir).trainer.max_epochs == 8
    assert "TeacherLR probe: up to 200 epochs" in probe_note(probe) and probe_note(student) == ""


# ------------------------------------------------------------------ 9. predict: empty inputs, --top


def test_predict_on_nothing_to_predict_or_an_impossible_top_is_one_line(short_run, small_synth, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.wav").mkdir()
    for given in (tmp_path / "empty", tmp_path / "x.wav"):
        assert main(["predict", str(short_run), str(given)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith("eastmir: error: nothing to predict: ") and "a folder with no audio files" in line
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    for top in ("-1", "0"):
        with pytest.raises(SystemExit) as stop:
            main(["predict", str(short_run), clip, "--top", top])
        assert stop.value.code == 2
        assert f"argument --top: must be at least 1, got {int(top)}" in capsys.readouterr().err


# ------------------------------------------------------------------ tracebacks where one line belongs


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bytes(range(256)) + bytes(44), "not UTF-8 text (byte 128 cannot be read as UTF-8)"),
        ("seed: 1\n".encode("utf-16"), "UTF-16 text"),
        (b"seed: 1\nseed: 2\n", "the key 'seed' is given twice (lines 1 and 2); keep one"),
        (b"x: " + b"a" * (2 << 20), "2.0 MiB, too large for a config (at most 1 MiB)"),
    ],
)
def test_unreadable_configs_are_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["fit", "--config", str(path), "--workdir", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"eastmir: error: {path}: ") and problem in line


def test_report_out_onto_an_existing_file_is_one_line(short_run, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    assert main(["report", str(short_run), "--out", str(target)]) == 2
    assert "a file stands there; name a folder" in one_error_line(capsys.readouterr().err)
    assert target.read_text() == "mine\n"


def test_a_file_size_limit_is_the_file_too_large_line(tmp_path):
    from eastmir.errors import storage_error, system_error_line

    line = system_error_line(OSError(errno.EFBIG, "File too large", str(tmp_path / "last.ckpt")))
    assert line.startswith(f"{tmp_path / 'last.ckpt'}: file too large") and "ulimit -f" in line
    torch_says = RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file")
    assert storage_error(ValueError("other"), tmp_path / "x") is None
    assert storage_error(torch_says, tmp_path / "x") is not None


# ------------------------------------------------------------------ valid input that was refused


def test_a_complete_store_is_read_without_the_building_lock(small_synth, store):
    """fit on a complete store on a read-only file system, or beside another fit: it only reads."""
    from eastmir.data.features import build_logmels, logmel_producer
    from eastmir.filelock import hold
    from eastmir.frontend import FrontendConfig

    build_logmels(small_synth, store, FrontendConfig(), progress=False)
    folder = store.collection(logmel_producer(FrontendConfig())).folder
    (folder / ".building").unlink(missing_ok=True)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with hold(folder / ".building"):  # another process filling it (or a lock that cannot be created)
        _, report = build_logmels(small_synth, store, FrontendConfig(), progress=False)
    assert report.cached == len(small_synth.clips) and report.built == 0
    (folder / ".building").unlink()
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert after == {k: v for k, v in before.items() if k != ".building"}  # nothing written


def test_song_ogg_and_song_flac_are_two_clips_and_an_absolute_path_inside_the_root_is_kept(tmp_path):
    table(tmp_path, "path,labels", ["audio/c{i}.wav,piano", "audio/c{i}.wav,drums"], n=20)
    tone = np.sin(np.arange(16000) / 7).astype(np.float32) * 0.1
    sf.write(tmp_path / "audio" / "song.ogg", tone, 16000)
    sf.write(tmp_path / "audio" / "song.flac", -tone, 16000)
    with open(tmp_path / "labels.csv", "a") as fh:
        fh.write(f"audio/song.ogg,piano\naudio/song.flac,drums\n{tmp_path / 'audio' / 'c0.wav'},piano\n")
    (tmp_path / "labels.csv").write_text((tmp_path / "labels.csv").read_text().replace("audio/c0.wav,piano\n", "", 1))
    manifest = pipeline.prepare("folder", tmp_path, {}, progress=False)
    ids = {c.clip_id for c in manifest.clips}
    assert {"audio/song.ogg", "audio/song.flac", "audio/c0", "audio/c1"} <= ids and len(ids) == 22


def test_a_label_holding_another_mark_is_kept_when_the_separator_separates(tmp_path):
    table(tmp_path, "path,labels", ["audio/c{i}.wav,rock|pop;drums", "audio/c{i}.wav,drums"])
    manifest = pipeline.prepare("folder", tmp_path, {"check_audio": False}, progress=False)
    assert manifest.classes == ["drums", "rock|pop"]


# ------------------------------------------------------------------ wrong reasons


def test_paths_that_are_not_files_are_named_as_what_they_are(tmp_path):
    table(tmp_path, "path,labels", ["audio/c{i}.wav,piano", "audio/c{i}.wav,drums"], n=40)
    (tmp_path / "audio" / "x.wav").mkdir()
    os.mkfifo(tmp_path / "audio" / "pipe.wav")
    with open(tmp_path / "labels.csv", "a") as fh:
        fh.write("audio/x.wav,piano\naudio/pipe.wav,piano\n")
    pipeline.prepare("folder", tmp_path, {"max_bad_fraction": 0.1}, progress=False)
    with open(tmp_path / "excluded.csv", newline="") as fh:
        details = {row["file"]: row["detail"] for row in csv.DictReader(fh)}
    assert details["audio/x.wav"].endswith("is a folder, not a file")
    assert details["audio/pipe.wav"].endswith("is not a regular file (a pipe (FIFO))")
    from eastmir.inference.files import expand_inputs

    files, failures = expand_inputs(["/dev/zero", str(tmp_path / "audio" / "pipe.wav"), str(tmp_path / "no.wav")])
    reasons = [f.reason for f in failures]
    assert files == [] and reasons == [
        "/dev/zero: is not a regular file (a character device)",
        f"{tmp_path / 'audio' / 'pipe.wav'}: is not a regular file (a pipe (FIFO))",
        f"{tmp_path / 'no.wav'}: no such file, folder or match",
    ]


def test_a_read_only_weights_cache_names_eastmir_cache_not_cache_dir(tmp_path, monkeypatch):
    from eastmir.errors import system_error_line

    monkeypatch.setenv("EASTMIR_CACHE", str(tmp_path))
    line = system_error_line(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "weights" / "x.whl")))
    assert "set EASTMIR_CACHE to a writable folder" in line and "--cache-dir" not in line


def test_a_narrow_band_recording_is_told_how_many_mel_bands_are_empty(short_run, tmp_path, capsys):
    sf.write(tmp_path / "phone.wav", (np.sin(np.arange(24000) / 3) * 0.1).astype(np.float32), 8000)
    assert main(["predict", str(short_run), str(tmp_path / "phone.wav"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "eastmir: warning: " in err and "recorded at 8000 Hz" in err and "bands are empty" in err
    from eastmir.audio import band_limit_note
    from eastmir.frontend import FrontendConfig

    assert band_limit_note("x", 16000, FrontendConfig()) is None
    empty = int(band_limit_note("x", 8000, FrontendConfig(fmax=8000.0)).split(": ")[-1].split(" of ")[0])
    assert 15 < empty < 40  # the bands whose lower edge lies above 4 kHz: a quarter of the mel scale


def test_config_yaml_writes_out_the_clip_length_the_run_used(short_run):
    written = yaml.safe_load((short_run / "config.yaml").read_text())
    assert written["data"]["clip_seconds"] == pytest.approx(2.5)  # the small synth's clips (config: null)
