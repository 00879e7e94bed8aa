"""The one store: checksummed atomic entries, content keys, the fill loop."""

import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

from eastmir import pipeline
from eastmir.audio import load_audio
from eastmir.data.features import build_logmels
from eastmir.data.fill import SourceItem, fill
from eastmir.data.store import (
    Producer,
    Store,
    check_array,
    entry_shape,
    read_entry,
    source_key,
    write_entry,
)
from eastmir.errors import SourceError, StoreError
from eastmir.frontend import FrontendConfig, LogMelFrontend


def test_entry_round_trip_and_plain_numpy_can_read_it(tmp_path):
    x = np.random.default_rng(0).standard_normal((96, 151)).astype(np.float32)
    write_entry(tmp_path / "e.npy", x)
    assert np.array_equal(read_entry(tmp_path / "e.npy"), x)
    assert np.array_equal(np.load(tmp_path / "e.npy"), x)  # still a .npy file
    assert entry_shape(tmp_path / "e.npy") == (96, 151)
    assert not list(tmp_path.glob(".*part"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_entry_is_detected_and_named(tmp_path, damage):
    path = tmp_path / "e.npy"
    write_entry(path, np.ones((4, 8), np.float32))
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[200] ^= 0x01  # one bit of the data
    else:
        blob = bytearray(b"not an entry at all, not at all")
    path.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match=rf"{path}: corrupted store entry .*delete it and rerun"):
        read_entry(path)


def test_check_array_refuses_wrong_shape_and_non_finite():
    assert check_array(np.ones((3, 8)), (None, 8), "x").dtype == np.float32
    with pytest.raises(SourceError, match=r"x: shape \(3, 7\), expected \(any, 8\)"):
        check_array(np.ones((3, 7)), (None, 8), "x")
    with pytest.raises(SourceError, match="x: 1 of 24 values are NaN or infinite"):
        check_array(np.r_[np.ones(23), np.nan].reshape(3, 8), (None, 8), "x")
    with pytest.raises(SourceError, match=r"shape \(0, 8\)"):
        check_array(np.ones((0, 8)), (None, 8), "x")


def test_source_key_follows_the_content(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, np.zeros(1600, np.float32), 16000)
    sf.write(b, np.full(1600, 0.5, np.float32), 16000)
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert source_key(a) != source_key(b)  # same size and mtime, another content
    before = source_key(a)
    time.sleep(0.01)
    sf.write(a, np.ones(1600, np.float32) * 0.1, 16000)  # rewritten in place
    assert source_key(a) != before
    c = tmp_path / "elsewhere" / "c.wav"
    c.parent.mkdir()
    c.write_bytes(b.read_bytes())
    assert source_key(c) == source_key(b)  # a copy elsewhere: the same entry


def test_producer_key_changes_with_every_setting():
    from eastmir.data.features import logmel_producer

    keys = {
        logmel_producer(FrontendConfig()).key,
        logmel_producer(FrontendConfig(n_mels=128, fmax=8000)).key,
        logmel_producer(FrontendConfig(hop_length=256)).key,
        logmel_producer(FrontendConfig(norm_shift=0.0)).key,
    }
    assert len(keys) == 4


def test_stale_features_of_another_rendering_are_never_read(tmp_path):
    """The issue's case: synth rendered with another seed into another root, fitted in the same
    workdir, used to reuse the old log-mels (max difference 3.77)."""
    store = Store(tmp_path / "cache")
    frontend = FrontendConfig()
    one = pipeline.prepare("synth", tmp_path / "seed1", {"n_clips": 6, "clip_seconds": 1.0, "seed": 1}, False)
    two = pipeline.prepare("synth", tmp_path / "seed2", {"n_clips": 6, "clip_seconds": 1.0, "seed": 2}, False)
    assert [c.clip_id for c in one.clips] == [c.clip_id for c in two.clips]  # the same clip ids
    build_logmels(one, store, frontend, progress=False)
    collection, report = build_logmels(two, store, frontend, progress=False)
    assert report.built == 6 and report.cached == 0
    module = LogMelFrontend(frontend)
    for clip in two.clips:
        stored = read_entry(collection.entry(report.keys[clip.clip_id]))
        audio = load_audio(two.audio_file(clip), 16000)
        direct = module(__import__("torch").from_numpy(audio)[None])[0].numpy()
        assert np.allclose(stored, direct, atol=1e-5)


def test_fill_collects_every_failure_then_raises_or_skips(tmp_path):
    store = Store(tmp_path / "cache")
    producer = Producer("embedding", "toy", {"v": 1}, (None, 2))
    items = []
    for i, content in enumerate([np.ones((2, 2)), np.full((1, 2), np.nan), np.ones((3, 3)), np.ones((1, 2))]):
        np.save(tmp_path / f"c{i}.npy", content)
        items.append(SourceItem(f"c{i}", tmp_path / f"c{i}.npy"))
    items.append(SourceItem("c9", tmp_path / "missing.npy"))
    collection = store.collection(producer)
    with pytest.raises(StoreError, match=r"3 clip\(s\) could not be used, listed in .*failures.json") as info:
        fill(collection, items, np.load, lambda arrays: arrays, progress=False)
    message = str(info.value)
    assert "missing.npy: file not found" in message and "NaN or infinite" in message
    failures = json.loads(collection.failures_file.read_text())
    assert set(failures) == {"c1", "c2", "c9"}
    report = fill(collection, items, np.load, lambda arrays: arrays, on_error="skip", progress=False)
    assert report.cached == 2 and report.built == 0 and set(report.failed) == {"c1", "c2", "c9"}
    assert set(report.keys) == {"c0", "c3"}


def test_a_root_rendered_again_in_place_is_recomputed(tmp_path):
    import shutil

    store, frontend = Store(tmp_path / "cache"), FrontendConfig()
    root = tmp_path / "synth"
    first = pipeline.prepare("synth", root, {"n_clips": 3, "clip_seconds": 1.0, "seed": 1}, False)
    _, report_one = build_logmels(first, store, frontend, progress=False)
    shutil.rmtree(root)
    time.sleep(0.01)
    second = pipeline.prepare("synth", root, {"n_clips": 3, "clip_seconds": 1.0, "seed": 2}, False)
    _, report_two = build_logmels(second, store, frontend, progress=False)
    assert report_two.built == 3 and set(report_one.keys.values()).isdisjoint(report_two.keys.values())


def test_worker_processes_build_the_same_entries(small_synth, tmp_path):
    frontend = FrontendConfig()
    here_c, here = build_logmels(small_synth, Store(tmp_path / "here"), frontend, progress=False)
    there_c, there = build_logmels(small_synth, Store(tmp_path / "there"), frontend, progress=False, workers=2)
    assert here.keys == there.keys and there.built == len(small_synth.clips)
    for key in here.keys.values():
        assert here_c.entry(key).read_bytes() == there_c.entry(key).read_bytes()


def quiet_folder(root, n, seconds=10.0, sr=16000):
    """``n`` near-silent FLAC clips and their CSV: cheap to write, a real decode and log-mel each."""
    import csv as csvlib

    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csvlib.writer(fh)
        writer.writerow(["path", "labels"])
        for i in range(n):
            sf.write(
                root / "audio" / f"q{i:03d}.flac",
                (rng.standard_normal(int(seconds * sr)) * 1e-3).astype(np.float32),
                sr,
            )
            writer.writerow([f"audio/q{i:03d}.flac", ["a", "b", "c"][i % 3]])
    return pipeline.prepare("folder", root, {"check_audio": False}, progress=False)


def test_feature_building_killed_half_way_resumes_to_the_same_store(tmp_path):
    import signal
    import subprocess
    import sys

    manifest = quiet_folder(tmp_path / "data", 300)
    command = [
        sys.executable,
        "-m",
        "eastmir.cli",
        "features",
        "--config",
        "folder/baseline",
        "--workdir",
        str(tmp_path / "killed"),
        "--no-progress",
        "--set",
        f"data.root={manifest.root}",
    ]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    entries = tmp_path / "killed" / "cache" / "logmel"
    while child.poll() is None and len(list(entries.glob("*/*.npy"))) < 30:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    built = len(list(entries.glob("*/*.npy")))
    assert 30 <= built < 300
    done = subprocess.run(command, capture_output=True, text=True)  # the same command again
    assert done.returncode == 0, done.stderr
    assert f"{300 - built} stored now, {built} already stored" in done.stdout
    from eastmir.config import load_config

    frontend = load_config("folder/baseline", workdir=tmp_path).frontend  # what the command built with
    reference, report = build_logmels(manifest, Store(tmp_path / "straight" / "cache"), frontend, progress=False)
    folder = next(entries.iterdir())
    assert sorted(p.name for p in folder.glob("*.npy")) == sorted(f"{k}.npy" for k in report.keys.values())
    for key in report.keys.values():
        assert (folder / f"{key}.npy").read_bytes() == reference.entry(key).read_bytes()
    assert not list(folder.glob(".*.part"))  # the killed writer's temporary file was cleaned


def test_a_corrupted_entry_and_a_corrupted_source_clip_are_both_detected(small_synth, tmp_path, capsys):
    import shutil

    from eastmir.config import load_config

    root = tmp_path / "copy"
    shutil.copytree(small_synth.root, root)
    cfg = load_config("synth/baseline", [f"data.root={root}", "trainer.max_epochs=1"], workdir=tmp_path)
    manifest = pipeline.open_dataset(cfg)
    store = pipeline.open_store(cfg)
    collection, report = pipeline.features(cfg, manifest, store, progress=False)
    victim = collection.entry(report.keys[manifest.split("train")[0].clip_id])
    blob = bytearray(victim.read_bytes())
    blob[300] ^= 0x10
    victim.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match=rf"{victim}: corrupted store entry \(checksum mismatch\)"):
        pipeline.fit(cfg, progress=False)
    _, again = pipeline.features(cfg, manifest, store, progress=False, verify=True)
    assert again.built == 1 and "rebuilding it" in capsys.readouterr().out
    read_entry(victim)  # whole again

    clip = manifest.split("valid")[0]
    manifest.audio_file(clip).write_bytes(b"RIFF....WAVEnot audio any more")  # the source changed: a new key
    with pytest.raises(StoreError, match=rf"1 clip\(s\) could not be used.*{clip.clip_id}.wav: not decodable as audio"):
        pipeline.features(cfg, manifest, store, progress=False)
