"""Faults a careful user hit on real data (issue 15), each with the input that showed it."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch.callbacks import Callback

from eastmir import load_run, pipeline
from eastmir.audio import AudioDecodeError, load_audio
from eastmir.errors import ConfigError, ManifestError, RunError
from eastmir.mpeg import parse_header, stream_layout
from eastmir.reporting.tables import markdown_table, read_runs
from eastmir.rundir import RunDirectory

RATE = 44100
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)


def encode(path, mode="CONSTANT", rate=RATE, signal=TONE):
    """An MP3 as libsndfile's LAME writes it: a Xing/Info frame first, then the audio frames."""
    with sf.SoundFile(path, "w", rate, 1, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode=mode) as fh:
        fh.write(signal)
    return path.read_bytes()


def id3v2(size: int) -> bytes:
    """An ID3v2.3 tag of about ``size`` bytes holding a title and a cover picture (APIC)."""
    frames = b""
    for name, body in ((b"TIT2", b"\x00Etude in C"), (b"APIC", b"\x00image/jpeg\x00\x03\x00" + bytes(size))):
        frames += name + len(body).to_bytes(4, "big") + b"\x00\x00" + body
    n = len(frames)
    synchsafe = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    return b"ID3\x03\x00\x00" + synchsafe + frames


ID3V1 = b"TAG" + b"Etude".ljust(30, b"\x00") + bytes(95)
APE = b"APETAGEX" + (2000).to_bytes(4, "little") + (32).to_bytes(4, "little") + bytes(16)  # an empty APEv2 footer


def without_length_header(blob: bytes) -> bytes:
    """The stream without its first (Xing/Info) frame, as iTunes and many CBR encoders write it."""
    first = parse_header(blob, 0)
    assert first is not None and stream_layout(blob).declared_frames is not None
    return blob[first.length :]


# name → how the real-world file is made from libsndfile's own encoding
SHAPES = {
    "CBR, no length header, 2 kB ID3v2 (iTunes)": lambda b: id3v2(2048) + without_length_header(b),
    "CBR, Info header, 200 kB of cover art, ID3v1": lambda b: id3v2(200_000) + b + ID3V1,
    "CBR, no length header, ID3v2 and ID3v1": lambda b: id3v2(4096) + without_length_header(b) + ID3V1,
    "CBR, Info header, APEv2 tag": lambda b: b + APE,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_real_world_mp3_shapes_decode_whole(tmp_path, shape):
    encode(tmp_path / "plain.mp3")
    reference = load_audio(tmp_path / "plain.mp3", RATE)
    path = tmp_path / "tagged.mp3"
    path.write_bytes(SHAPES[shape]((tmp_path / "plain.mp3").read_bytes()))
    audio = load_audio(path, RATE)
    # without the LAME tag no decoder knows the encoder's delay and padding: up to two frames more
    assert len(reference) <= len(audio) <= len(reference) + 2 * 1152, (len(audio), len(reference))
    lag = len(audio) - len(reference)
    best = min(range(lag + 1 + 1105), key=lambda s: np.abs(audio[s : s + 20000] - reference[:20000]).mean())
    assert np.abs(audio[best : best + len(reference) - 2000] - reference[: len(reference) - 2000]).max() < 0.02


@pytest.mark.parametrize("mode", ["VARIABLE", "AVERAGE"])
def test_vbr_without_a_length_header_is_decoded_whole_not_cut_at_an_estimate(tmp_path, mode):
    blob = encode(tmp_path / "vbr.mp3", mode)
    assert len({blob[f.offset + 2] >> 4 for f in frames(blob)}) > 1  # really variable bitrates
    path = tmp_path / "no-header.mp3"
    path.write_bytes(id3v2(1024) + without_length_header(blob))
    assert sf.info(str(path)).frames < len(TONE) - 10_000  # libsndfile's estimate, where it would stop
    audio = load_audio(path, RATE)
    assert len(TONE) <= len(audio) <= len(TONE) + 2 * 1152


def frames(blob: bytes):
    position = 0
    while (frame := parse_header(blob, position)) is not None:
        yield frame
        position += frame.length


@pytest.mark.parametrize("header", [True, False])
def test_really_truncated_mp3s_are_still_refused(tmp_path, header):
    blob = encode(tmp_path / "whole.mp3")
    blob = id3v2(2048) + (blob if header else without_length_header(blob))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(blob[: len(blob) * 2 // 3])  # mid-frame
    with pytest.raises(AudioDecodeError, match="truncated") as info:
        load_audio(cut, RATE)
    assert info.value.kind == "truncated audio"
    if header:  # at a frame boundary: only the length header tells
        layout = stream_layout(blob)
        boundary = [f.offset for f in frames(blob[layout.start :])][60] + layout.start
        cut.write_bytes(blob[:boundary])
        with pytest.raises(AudioDecodeError, match="truncated"):
            load_audio(cut, RATE)


def test_prepare_and_training_apply_the_same_check(tmp_path):
    """``prepare`` (folder) keeps every valid shape and leaves out only the truncated file; the clips it keeps
    then decode for training, so nothing it accepted is refused later."""
    plain = encode(tmp_path / "plain.mp3")
    root = tmp_path / "data"
    (root / "audio").mkdir(parents=True)
    rows = [["path", "labels"]]
    for i, shape in enumerate(sorted(SHAPES) * 3):
        (root / "audio" / f"c{i}.mp3").write_bytes(SHAPES[shape](plain))
        rows.append([f"audio/c{i}.mp3", "ab"[i % 2]])
    (root / "audio" / "cut.mp3").write_bytes(plain[: len(plain) // 2])
    rows.append(["audio/cut.mp3", "a"])
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    manifest = pipeline.prepare("folder", root, {"max_bad_fraction": 0.2}, progress=False)
    assert len(manifest.clips) == 12
    with open(root / "excluded.csv", newline="") as fh:
        (excluded,) = list(csv.DictReader(fh))
    assert excluded["file"] == "audio/cut.mp3" and excluded["reason"] == "truncated audio"
    for clip in manifest.clips:
        assert abs(len(load_audio(manifest.audio_file(clip), 16000)) - 3 * 16000) < 1200


# ------------------------------------------------------------------ runs: fingerprint, lock, log, Ctrl-C


class CtrlCAt(Callback):
    """Ctrl-C (a KeyboardInterrupt) at the end of training epoch ``epoch``, after its checkpoints."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_rerun_with_other_settings_does_not_resume_the_old_run(small_synth, small_config, workdir):
    """Before: another λ, learning rate or data.root resumed the old checkpoint without a word."""
    cfg = small_config("east_final", "name=fingerprinted", "trainer.max_epochs=2")
    with pytest.raises(KeyboardInterrupt):
        pipeline.fit(cfg, progress=False, callbacks=[CtrlCAt(0)])
    changed = small_config("east_final", "name=fingerprinted", "trainer.max_epochs=2", "distillation.lambda=0.6")
    with pytest.raises(RunError) as info:
        pipeline.fit(changed, progress=False)
    message = str(info.value)
    assert message.startswith(f"{workdir / 'runs' / 'fingerprinted'} was started with other settings (")
    assert "distillation.lambda: 0.3 → 0.6" in message and "--overwrite" in message and "--set name=" in message
    assert "\n" not in message
    moved = small_config(
        "east_final", "name=fingerprinted", "trainer.max_epochs=2", f"data.root={workdir / 'elsewhere'}"
    )
    with pytest.raises(RunError, match=r"data\.root: "):
        pipeline.fit(moved, progress=False)
    run_dir = pipeline.fit(cfg, progress=False)  # the same settings: resumed and finished
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2
    with pytest.raises(RunError, match=r"seed: 0 → 1"):  # another seed under the same name: refused, not ignored
        pipeline.fit(small_config("east_final", "name=fingerprinted", "trainer.max_epochs=2", "seed=1"))
    again = pipeline.fit(changed, progress=False, overwrite=True)  # the first way on
    assert json.loads((again / "fingerprint.json").read_text())["config"]["distillation"]["lambda"] == 0.6


def test_a_rerun_on_changed_data_does_not_resume(small_config, tmp_path):
    root = tmp_path / "synth"
    manifest = pipeline.prepare("synth", root, {"n_clips": 40, "clip_seconds": 2.5, "seed": 3}, progress=False)
    cfg = small_config("baseline", "name=data_changed", "trainer.max_epochs=2", f"data.root={root}", workdir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        pipeline.fit(cfg, progress=False, callbacks=[CtrlCAt(0)])
    clip = manifest.clips[0]
    audio, rate = sf.read(manifest.audio_file(clip))
    sf.write(manifest.audio_file(clip), audio[::-1].copy(), rate)  # another recording in the same file
    with pytest.raises(RunError, match="the data it reads"):
        pipeline.fit(cfg, progress=False)


def test_the_training_log_survives_every_resume(small_synth, small_config):
    """Before: each resume deleted metrics.csv, and after two interruptions `report` said 'no epoch done'."""
    cfg = small_config("baseline", "name=twice_interrupted", "trainer.max_epochs=3")
    for epoch in (0, 1):
        with pytest.raises(KeyboardInterrupt):
            pipeline.fit(cfg, progress=False, callbacks=[CtrlCAt(epoch)])
    run = RunDirectory.of(cfg.workdir, "twice_interrupted")
    assert markdown_table(read_runs([run.path])).count("unfinished: epoch 2 of 3") == 1
    pipeline.fit(cfg, progress=False)
    with open(run.log_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({int(float(r["epoch"])) for r in rows if r.get("val_loss")}) == [0, 1, 2]
    assert sorted(int(float(r["epoch"])) for r in rows if r.get("val_loss")) == [0, 1, 2]  # no epoch twice


def test_one_process_at_a_time_trains_a_run_and_a_dead_holder_is_taken_over(small_synth, small_config):
    cfg = small_config("baseline", "name=locked")
    run = RunDirectory.of(cfg.workdir, "locked")
    with run.lock(), pytest.raises(RunError) as info:
        pipeline.fit(cfg, progress=False)
    assert str(info.value) == (
        f"{run.path} is being trained by process {os.getpid()} on {os.uname().nodename}; wait for it to finish "
        "or stop it, or give this run another name (--set name=…)"
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from eastmir.rundir import RunDirectory; import time\n"
            f"with RunDirectory({str(run.path)!r}).lock(): print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunError, match=f"process {holder.pid} "):
        pipeline.fit(cfg, progress=False)
    holder.kill()  # kill -9: the system releases its lock
    holder.wait()
    assert (pipeline.fit(cfg, progress=False) / "metrics.json").is_file()


def test_ctrl_c_in_extract_is_an_interrupt_not_an_exit(small_synth, aisfx_teacher, tmp_path, monkeypatch, capsys):
    """Before: Lightning turned Ctrl-C into `exit 1` with no message; now the command line says how to go on."""
    from eastmir.cli import main
    from eastmir.data.store import Store

    def pressed(arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(aisfx_teacher, "embed_arrays", pressed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.extract(aisfx_teacher, small_synth, Store(tmp_path / "cache"), batch_size=8, progress=False)
    monkeypatch.setattr(pipeline, "extract", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    argv = ["extract", "--teacher", "aisfx", "--dataset", str(small_synth.root), "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 130
    assert capsys.readouterr().err == "eastmir: interrupted; rerun the same command to resume\n"


# ------------------------------------------------------------------ folder CSVs


def label_table(root, header: str, rows: list[str], encoding: str = "utf-8", n: int = 12):
    """A folder of ``n`` one-second WAV files and the CSV ``header`` + ``rows`` (``{i}`` is the clip's number)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(root / "audio" / f"c{i}.wav", np.full(16000, 0.01 * (i + 1), np.float32), 16000)
    text = "\n".join([header, *(rows[i % len(rows)].format(i=i) for i in range(n))]) + "\n"
    (root / "labels.csv").write_bytes(text.encode(encoding))


@pytest.mark.parametrize(
    ("header", "rows", "repeated"),
    [
        ("path,labels,path", ["audio/c{i}.wav,piano,audio/c0.wav"], "'path'"),
        ("path,piano,voice,drums,piano", ["audio/c{i}.wav,1,0,1,0"], "'piano'"),
    ],
)
def test_a_repeated_column_name_is_refused_naming_it(tmp_path, header, rows, repeated):
    """Before: one of the two columns was kept silently (labels on the wrong file, a class emptied)."""
    label_table(tmp_path, header, rows)
    with pytest.raises(ManifestError) as info:
        pipeline.prepare("folder", tmp_path, {"check_audio": False}, progress=False)
    assert str(info.value) == (
        f"{tmp_path / 'labels.csv'}: the header names column(s) {repeated} more than once; a row's values would go "
        "to one of them silently: rename or remove the repeated column"
    )


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (["audio/c{i}.wav,piano", "audio/c{i}.wav,Piano", "audio/c{i}.wav,drums"], "'Piano' / 'piano'"),
        (["audio/c{i}.wav,electric guitar", "audio/c{i}.wav,electric  guitar"], "'electric  guitar' / 'electric"),
        (['audio/c{i}.wav,"piano, drums"', "audio/c{i}.wav,drums"], "hold ',', but separator is ';'"),
    ],
)
def test_label_variants_are_reported_instead_of_becoming_classes(tmp_path, rows, problem):
    label_table(tmp_path, "path,labels", rows)
    with pytest.raises(ManifestError, match="column 'labels': ") as info:
        pipeline.prepare("folder", tmp_path, {"check_audio": False}, progress=False)
    assert problem in str(info.value)


def test_a_latin1_table_is_named_with_its_line(tmp_path):
    label_table(tmp_path, "path,labels", ["audio/c{i}.wav,piano", "audio/c{i}.wav,caf\u00e9"], encoding="latin-1")
    with pytest.raises(ManifestError) as info:
        pipeline.prepare("folder", tmp_path, {"check_audio": False}, progress=False)
    assert str(info.value) == (
        f"{tmp_path / 'labels.csv'}: line 3 is not UTF-8 (byte 0xe9; saved as Latin-1 or Windows-1252?); "
        "save the table as UTF-8"
    )


# ------------------------------------------------------------------ defaults that work


def test_short_clips_train_at_the_student_s_shortest_input_and_a_too_short_choice_stops_before_work(tmp_path, capsys):
    """Before: the default clip length (the most common duration, 1 s here) failed with 'mobile_fcn needs at
    least 96 frames', and only after every log-mel had been computed."""
    from eastmir.config import load_config

    rows = ["audio/c{i}.wav,piano", "audio/c{i}.wav,drums", "audio/c{i}.wav,voice"]
    label_table(tmp_path / "d", "path,labels", rows, n=30)
    pipeline.prepare("folder", tmp_path / "d", {"seed": 1}, progress=False)
    base = [f"data.root={tmp_path / 'd'}", "trainer.max_epochs=1", "data.batch_size=4", "name=short"]
    cfg = load_config("folder/baseline", [*base, "data.clip_seconds=1.0"], workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"data\.clip_seconds: 1 s gives 50 input frames, but mobile_fcn needs at"):
        pipeline.fit(cfg, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # stopped before any work
    run_dir = pipeline.fit(load_config("folder/baseline", base, workdir=tmp_path), progress=False, overwrite=True)
    # 1.901 s: the authors' pre-emphasis (folder's front end) takes one sample before the 96 frames
    assert "clips are padded with silence to 1.901 s" in capsys.readouterr().out
    assert load_run(run_dir).system.hparams["clip_seconds"] == pytest.approx(1.901, abs=1e-3)


# ------------------------------------------------------------------ one line, exit 2, nothing partial


@pytest.fixture(scope="module")
def finished(small_synth, small_synth_embeddings, workdir):
    from eastmir.config import load_config

    return pipeline.fit(load_config("synth/baseline", ["name=faults_run"], workdir=workdir), progress=False)


class FullDisk:
    """``open`` for writing whose ``write`` fails as a full disk does (ENOSPC, without a file name)."""

    def __init__(self, real_open):
        self.real_open = real_open

    def __call__(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        if "w" in mode:

            def write(data):
                raise OSError(errno.ENOSPC, "No space left on device")

            handle.write = write
        return handle


def test_a_full_disk_in_report_is_one_line_and_leaves_the_old_report(finished, tmp_path, monkeypatch, capsys):
    from eastmir.cli import main

    out = tmp_path / "report"
    assert main(["report", str(finished), "--out", str(out)]) == 0
    before = (out / "report.html").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr("eastmir.fetch.open", FullDisk(open), raising=False)
    assert main(["report", str(finished), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: ") and err.count("\n") == 1
    assert "no space left on the device; free some space" in err and str(out) in err
    assert (out / "report.html").read_bytes() == before  # the old report, whole
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]  # no temporary file left behind
    assert all(p.stat().st_size > 0 for p in (out / "figures").glob("*.png"))


def test_a_full_disk_in_features_is_one_line(small_synth, workdir, tmp_path, monkeypatch, capsys):
    from eastmir.cli import main

    monkeypatch.setattr("eastmir.fetch.open", FullDisk(open), raising=False)
    argv = ["features", "--config", "synth/baseline", "--workdir", str(workdir), "--set", f"cache_dir={tmp_path}"]
    argv.append("--no-progress")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eastmir: error: {tmp_path}") and "no space left on the device" in err
    assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob(".*.part"))


def test_an_export_that_fails_leaves_nothing_half_made(finished, tmp_path, monkeypatch):
    from eastmir.inference import export as exporting
    from eastmir.inference import load_run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.md"))

    monkeypatch.setattr(exporting, "model_card", full)
    with pytest.raises(OSError):
        exporting.export(load_run(finished), "torchscript", tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []  # neither a model without its card nor a temporary folder


def test_a_read_only_store_that_holds_every_entry_still_serves_them(small_synth, store, monkeypatch):
    """Before: filling a complete read-only store removed a failures.json that was not there, and crashed."""
    from pathlib import Path

    from eastmir.data.features import build_logmels
    from eastmir.frontend import FrontendConfig

    build_logmels(small_synth, store, FrontendConfig(), progress=False)

    def refused(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", refused)
    monkeypatch.setattr("eastmir.fetch.open", lambda *a, **k: refused(a[0]), raising=False)
    _, report = build_logmels(small_synth, store, FrontendConfig(), progress=False)
    assert report.cached == len(small_synth.clips) and report.built == 0


@pytest.mark.parametrize(
    ("hop", "problem"), [("0", "above 0.0, got 0"), ("-1", "above 0.0, got -1"), ("nan", "finite number, got 'nan'")]
)
def test_predict_refuses_a_hop_that_is_not_a_positive_number(finished, small_synth, hop, problem, capsys):
    from eastmir.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["predict", str(finished), str(small_synth.audio_file(small_synth.clips[0])), "--hop", hop])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: argument --hop: must be ") and problem in err


def test_predict_out_into_a_missing_folder_and_report_on_a_damaged_metrics_file(
    finished, small_synth, tmp_path, capsys
):
    """An output's missing folder is named before any work (and nothing is made outside the named output)."""
    import shutil

    from eastmir.cli import main

    out = tmp_path / "new" / "folder" / "tags.csv"
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    assert main(["predict", str(finished), clip, "--format", "csv", "--out", str(out), "--no-progress"]) == 2
    assert f"the folder {out.parent} does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    out.parent.mkdir(parents=True)
    assert main(["predict", str(finished), clip, "--format", "csv", "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().startswith("file,")
    damaged = tmp_path / "damaged"
    shutil.copytree(finished, damaged)
    (damaged / "metrics.json").write_text((finished / "metrics.json").read_text()[:40])
    capsys.readouterr()
    assert main(["report", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eastmir: error: {damaged / 'metrics.json'}: damaged (JSONDecodeError at character ")
    assert err.endswith("); rerun `eastmir fit` for this run to write it again\n") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("distillation.lambda=nan", "distillation.lambda: must be a finite number, got 'nan'"),
        ("optimizer.lr=inf", "optimizer.lr: must be a finite number, got 'inf'"),
        ("data.batch_size=1", "data.batch_size: must be at least 2, got 1"),
        # round three (issue 24): the same bounded types on every number
        ("data.clip_seconds=1e9", "data.clip_seconds: must be at most 600.0, got '1e9'"),
        ("seed=-1", "seed: must be at least 0, got -1"),
        ("student.dropout=1.5", "student.dropout: must be below 1.0, got 1.5"),
        ("student.dropout=-0.5", "student.dropout: must be at least 0.0, got -0.5"),
    ],
)
def test_impossible_numbers_are_named_as_what_they_are(workdir, override, message):
    from eastmir.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config("synth/east_final", [override], workdir=workdir)
    assert str(info.value) == f"synth/east_final: {message}"


def test_a_one_class_table_without_negatives_and_a_link_loop(tmp_path):
    label_table(tmp_path, "path,labels", ["audio/c{i}.wav,piano"])
    with pytest.raises(ManifestError, match="no class has both a clip with it and a clip without it"):
        pipeline.prepare("folder", tmp_path, {}, progress=False)
    label_table(tmp_path, "path,labels", ["audio/c{i}.wav,piano", "audio/c{i}.wav,"], n=30)  # one class: fine
    with open(tmp_path / "labels.csv", "a") as fh:
        fh.write("audio/loop.wav,piano\n")
    os.symlink("loop.wav", tmp_path / "audio" / "loop.wav")
    manifest = pipeline.prepare("folder", tmp_path, {"max_bad_fraction": 0.1}, progress=False)
    assert manifest.classes == ["piano"] and len(manifest.clips) == 30
    with open(tmp_path / "excluded.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["reason"] == "symlink loop" and row["file"] == "audio/loop.wav"


def test_audio_paths_that_are_not_files_say_what_they_are(tmp_path, recwarn):
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(AudioDecodeError, match=r"folder\.wav: a folder, not an audio file$"):
        load_audio(tmp_path / "folder.wav", 16000)
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioDecodeError, match=r"pipe.wav: not a regular file \(a pipe, socket or device\)"):
        load_audio(tmp_path / "pipe.wav", 16000)
    sf.write(tmp_path / "loud.wav", np.linspace(-50, 50, 16000, dtype=np.float32), 16000, subtype="FLOAT")
    load_audio(tmp_path / "loud.wav", 16000)
    (warning,) = [str(w.message) for w in recwarn]
    assert warning.endswith("loud.wav: samples reach ±50, beyond full scale (±1); kept as they are")


def test_a_teacher_without_spread_is_named(tmp_path, capsys):
    from eastmir.data.clips import ClipRecord, warn_without_spread
    from eastmir.data.store import write_entry

    records = []
    for i in range(10):
        write_entry(tmp_path / f"{i}.npy", np.ones((3, 8), np.float32))
        records.append(ClipRecord(str(i), np.zeros(2), np.ones(2, bool), embedding_entry=tmp_path / f"{i}.npy"))
    warn_without_spread(records, "broken")
    assert "the broken embeddings do not vary over 10 training clips" in capsys.readouterr().out
    write_entry(tmp_path / "0.npy", np.zeros((3, 8), np.float32))
    warn_without_spread(records, "fine")
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ one inference path


@pytest.mark.parametrize("time", [1, 50, 95, 96, 97, 143, 144, 145, 300, 1001])
def test_the_scripted_windows_equal_the_exported_ones(time):
    from eastmir.inference.windows import cut, cut_scripted, starts

    x = torch.randn(2, 3, time)
    windows, weights = cut(x, 96, 48, -1.5)
    scripted = cut_scripted()(x, 96, 48, -1.5)
    assert torch.equal(windows, scripted[0]) and torch.equal(weights, scripted[1])
    kept = windows[0][weights > 0]
    expected = starts(time, 96, 48)
    assert len(kept) == len(expected) and int(weights.sum()) == len(expected)
    for window, start in zip(kept, expected):
        assert torch.equal(window[..., : max(0, min(96, time - start))], x[0, :, start : start + 96])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_model_and_predict_agree_on_every_length(finished, tmp_path, fmt):
    """Before: they disagreed on any length but the training clip's (0.99 on a whole file, 0.27 on a short one)."""
    from eastmir.inference import load_run
    from eastmir.inference.export import export
    from eastmir.inference.model import min_samples
    from eastmir.inference.parity import Runner
    from eastmir.inference.predict import load_student

    run = load_run(finished)
    path, _, _ = export(run, fmt, tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt"))
    runner, student = Runner(path), load_student(finished, fast=False)
    clip = round(run.system.hparams["clip_seconds"] * 16000)
    rng = np.random.default_rng(1)
    outputs = []
    for length in (min_samples(run), clip // 4, clip - 1, clip, clip + 1, 2 * clip + 333, 5 * clip):
        x = (0.2 * rng.standard_normal(length) * np.sin(np.arange(length) / (50 + length % 97))).astype(np.float32)
        expected = student.predict(x, 16000).probabilities
        got = runner(x[None])[0]
        assert np.abs(got - expected).max() < 1e-4, length
        outputs.append(got)
    assert np.ptp(np.stack(outputs), axis=0).max() > 1e-7  # the comparison is not between constant outputs
    with pytest.raises(RunError, match="is shorter than the model's minimum of 800"):
        runner(np.zeros((1, 799), np.float32))
    failure = next(iter(student.predict_files([write_wav(tmp_path / "blip.wav", 700)], progress=False)))
    assert failure.reason == "too short: 700 samples (0.044 s) at 16000 Hz, below the model's minimum of 800 " + (
        "(one analysis window)"
    )


def write_wav(path, samples):
    sf.write(path, np.full(samples, 0.1, np.float32), 16000)
    return path


# ------------------------------------------------------------------ source identity by content


def test_a_file_replaced_with_its_size_and_mtime_restored_is_not_served_a_stale_entry(small_synth, tmp_path):
    """Before: two WAV files of the same length have the same size, so path + size + mtime served the old
    file's log-mel (4.24 away from the new audio's), and `features --verify` agreed."""
    import shutil

    from eastmir.data.features import build_logmels
    from eastmir.data.manifest import load_manifest
    from eastmir.data.store import Store, read_entry
    from eastmir.frontend import FrontendConfig, LogMelFrontend

    root = tmp_path / "copy"
    shutil.copytree(small_synth.root, root)
    manifest = load_manifest(root)
    store, frontend = Store(tmp_path / "cache"), FrontendConfig()
    _, before = build_logmels(manifest, store, frontend, progress=False)
    victim, other = manifest.audio_file(manifest.clips[0]), manifest.audio_file(manifest.clips[1])
    info = victim.stat()
    assert other.stat().st_size == info.st_size
    victim.write_bytes(other.read_bytes())  # another recording, the same size …
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))  # … and the old modification time
    for verify in (False, True):
        collection, after = build_logmels(manifest, store, frontend, progress=False, verify=verify)
        clip = manifest.clips[0].clip_id
        assert after.keys[clip] != before.keys[clip] and after.keys[clip] == after.keys[manifest.clips[1].clip_id]
        fresh = LogMelFrontend(frontend)(torch.from_numpy(load_audio(victim, 16000))[None])[0].numpy()
        assert np.abs(read_entry(collection.entry(after.keys[clip])) - fresh).max() < 1e-4


def test_prepare_records_each_file_s_content_and_a_moved_dataset_keeps_its_entries(small_synth, tmp_path):
    import hashlib
    import shutil

    from eastmir.data.features import build_logmels
    from eastmir.data.manifest import load_manifest
    from eastmir.data.store import Store
    from eastmir.frontend import FrontendConfig

    for clip in small_synth.clips[:5]:
        blob = small_synth.audio_file(clip).read_bytes()
        assert clip.content["sha256"] == hashlib.sha256(blob).hexdigest()
    store = Store(tmp_path / "cache")
    _, first = build_logmels(small_synth, store, FrontendConfig(), progress=False)
    moved = tmp_path / "moved"
    shutil.copytree(small_synth.root, moved)
    _, second = build_logmels(load_manifest(moved), store, FrontendConfig(), progress=False)
    assert second.cached == len(small_synth.clips) and second.built == 0 and second.keys == first.keys


def test_an_unusable_cache_folder_is_one_line(small_synth, tmp_path, monkeypatch, capsys):
    """$EASTMIR_CACHE under a file (as root, a read-only or forbidden folder cannot be made here)."""
    from eastmir.cli import main

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("EASTMIR_CACHE", str(tmp_path / "a-file" / "cache"))
    argv = ["extract", "--teacher", "aisfx", "--dataset", str(small_synth.root), "--cache-dir", str(tmp_path / "s")]
    assert main([*argv, "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"eastmir: error: {tmp_path / 'a-file' / 'cache' / 'weights'}: a part of this path is a file, not a folder; "
        "check the path (or $EASTMIR_CACHE, --workdir)\n"
    )


def test_a_second_filler_waits_for_the_first_then_stores_only_what_is_left(small_synth, tmp_path, capsys):
    """Two processes filling one collection: the second says whom it waits for, waits, and then finds every
    entry the first stored (flock conflicts between two open files of one process as between processes)."""
    import threading
    import time

    from eastmir.data.features import build_logmels, logmel_producer
    from eastmir.data.store import Store
    from eastmir.filelock import hold
    from eastmir.frontend import FrontendConfig

    store = Store(tmp_path / "cache")
    collection = store.collection(logmel_producer(FrontendConfig()))
    held, release = threading.Event(), threading.Event()

    def first_filler() -> None:
        with hold(collection.folder / ".building"):
            held.set()
            build_logmels(small_synth, Store(tmp_path / "other"), FrontendConfig(), progress=False)  # busy
            for entry in (tmp_path / "other").rglob("*.npy"):
                entry.rename(collection.folder / entry.name)  # what it stored, in this collection
            release.wait(10)

    thread = threading.Thread(target=first_filler)
    thread.start()
    held.wait(10)
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    _, report = build_logmels(small_synth, store, FrontendConfig(), progress=False)
    thread.join()
    assert time.monotonic() - started >= 0.9  # it waited for the holder
    assert (report.built, report.cached) == (0, len(small_synth.clips))  # and then stored nothing twice
    assert capsys.readouterr().out.startswith(
        f"{collection.folder} is being filled by process {os.getpid()} on {os.uname().nodename}: waiting for it"
    )


def test_a_broken_export_fails_its_parity_check(finished, tmp_path, monkeypatch):
    from eastmir.inference import load_run
    from eastmir.inference.export import export
    from eastmir.inference.parity import Runner

    real = Runner.__call__
    monkeypatch.setattr(Runner, "__call__", lambda self, x: real(self, x) + 2e-3)  # off by more than 1e-3
    with pytest.raises(RunError, match=r"the exported model differs from predict by 2\.0"):
        export(load_run(finished), "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_an_export_that_ignores_its_input_fails_even_on_a_run_whose_outputs_do_not_vary(
    finished, tmp_path, monkeypatch
):
    """A run whose outputs do not depend on the input (here: the head's weights zeroed) would let an export
    that ignores its input pass; the check then runs again on the same export with varied weights."""
    import torch

    from eastmir.inference import load_run
    from eastmir.inference.export import export
    from eastmir.inference.parity import Runner

    run = load_run(finished)
    with torch.no_grad():
        run.system.student.head.weight.zero_()
    _, _, notes = export(run, "onnx", tmp_path / "ok.onnx")  # a right export passes, saying how it checked
    assert "varied" not in notes[0] and "moved by seeded noise" in notes[1]
    real, first = Runner.__call__, {}

    def ignores_input(self, x):
        return first.setdefault(self.path, real(self, x))  # the first answer for every input

    monkeypatch.setattr(Runner, "__call__", ignores_input)
    with pytest.raises(RunError, match="the exported model differs from predict"):
        export(run, "onnx", tmp_path / "broken.onnx")
