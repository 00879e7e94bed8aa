"""Streaming a run's data from packed shards (a local folder standing in for a bucket)."""

import json

import numpy as np
import pytest

from eastmir import pipeline
from eastmir.cli import main
from eastmir.data.streaming import read_index, stream_split
from eastmir.errors import ConfigError


@pytest.fixture(scope="module")
def bucket(small_synth, small_synth_embeddings, workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bucket") / "synth-east_final"
    args = ["pack", "--config", "synth/east_final", "--workdir", str(workdir), "--out", str(out), "--shard-size", "25"]
    assert main([*args, "--no-progress"]) == 0
    return out


def test_pack_writes_every_split_in_shards_with_an_index(bucket, small_synth):
    index = read_index(str(bucket))
    assert index["classes"] == small_synth.classes and index["input_key"] == "logmel"
    assert {s: index["splits"][s]["clips"] for s in ("train", "valid", "test")} == {
        s: len(small_synth.split(s)) for s in ("train", "valid", "test")
    }
    assert len(index["splits"]["train"]["shards"]) == -(-len(small_synth.split("train")) // 25)


@pytest.mark.parametrize("url", ["path", "file"])
def test_streamed_samples_equal_the_store(bucket, small_synth, small_synth_embeddings, store, url, workdir):
    from eastmir.config import load_config
    from eastmir.data.features import build_logmels
    from eastmir.data.store import read_entry

    location = str(bucket) if url == "path" else f"file://{bucket}"
    index = read_index(location)
    streamed = {s["clip_id"]: s for s in stream_split(location, index, "valid")}
    frontend = load_config("synth/east_final", workdir=workdir).frontend  # what the pack was made with
    logmels, report = build_logmels(small_synth, store, frontend, progress=False)
    embeddings, emb_report = small_synth_embeddings
    for clip in small_synth.split("valid"):
        sample = streamed[clip.clip_id]
        assert np.array_equal(sample["input"], read_entry(logmels.entry(report.keys[clip.clip_id])))
        assert np.array_equal(sample["embedding"], read_entry(embeddings.entry(emb_report.keys[clip.clip_id])))
        assert np.array_equal(sample["targets"], clip.labels) and np.array_equal(sample["mask"], clip.mask)


def test_fit_trains_from_the_shards_alone(bucket, small_synth, small_config, tmp_path):
    cfg = small_config(
        "east_final",
        f"data.stream={bucket}",
        "data.root=/no/audio/here",
        f"cache_dir={tmp_path / 'empty-store'}",
        workdir=tmp_path,
    )
    metrics = json.loads((pipeline.fit(cfg, progress=False) / "metrics.json").read_text())
    assert metrics["n_clips"] == {s: len(small_synth.split(s)) for s in ("train", "valid", "test")}
    assert np.isfinite(list(metrics["test"].values())).all()
    assert not (tmp_path / "empty-store").exists()  # neither the audio nor the store was needed


def test_shards_packed_for_another_run_are_refused(bucket, small_config, tmp_path):
    cfg = small_config("baseline", f"data.stream={bucket}", workdir=tmp_path)
    with pytest.raises(ConfigError, match="packed with teacher embeddings"):
        pipeline.fit(cfg, progress=False)
    other = small_config(
        "east_final", f"data.stream={bucket}", "frontend.n_mels=128", "student.n_mels=128", workdir=tmp_path
    )
    with pytest.raises(ConfigError, match="packed with another front end"):
        pipeline.fit(other, progress=False)
