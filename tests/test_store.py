"""The one store: checksummed atomic entries, content keys, the fill loop."""

import json
import os
import time

import numpy as np
import pytest
import soundfile as sf

from eastmir import pipeline
from eastmir.audio import FrontendConfig, LogMelFrontend, load_audio
from eastmir.data.features import build_logmels
from eastmir.data.store import (
    Producer,
    SourceItem,
    Store,
    check_array,
    entry_shape,
    fill,
    read_entry,
    source_key,
    write_entry,
)
from eastmir.errors import SourceError, StoreError


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


def test_source_key_follows_path_size_and_mtime(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, np.zeros(1600, np.float32), 16000)
    sf.write(b, np.zeros(1600, np.float32), 16000)
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert source_key(a) != source_key(b)  # same size and mtime, another file
    before = source_key(a)
    time.sleep(0.01)
    sf.write(a, np.ones(1600, np.float32) * 0.1, 16000)  # rewritten in place
    assert source_key(a) != before


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
