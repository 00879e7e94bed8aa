"""Faults a careful user hit on real data (issue 15), each with the input that showed it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
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
    run = RunDirectory.of(cfg["workdir"], "twice_interrupted")
    assert markdown_table(read_runs([run.path])).count("unfinished: epoch 2 of 3") == 1
    pipeline.fit(cfg, progress=False)
    with open(run.log_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({int(float(r["epoch"])) for r in rows if r.get("val_loss")}) == [0, 1, 2]
    assert sorted(int(float(r["epoch"])) for r in rows if r.get("val_loss")) == [0, 1, 2]  # no epoch twice


def test_one_process_at_a_time_trains_a_run_and_a_dead_holder_is_taken_over(small_synth, small_config):
    cfg = small_config("baseline", "name=locked")
    run = RunDirectory.of(cfg["workdir"], "locked")
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
    with pytest.raises(ConfigError, match=r"data\.clip_seconds: 1 s gives 51 input frames, but mobile_fcn needs at"):
        pipeline.fit(cfg, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # stopped before any work
    run_dir = pipeline.fit(load_config("folder/baseline", base, workdir=tmp_path), progress=False, overwrite=True)
    assert "clips are padded with silence to 1.9 s" in capsys.readouterr().out
    assert load_run(run_dir).system.hparams["clip_seconds"] == pytest.approx(1.9)
