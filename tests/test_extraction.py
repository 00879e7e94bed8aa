"""Teacher extraction at scale: batches, decoding workers, two processes writing what one writes."""

import numpy as np
import pytest

from eastmir import pipeline
from eastmir.data.store import Store, read_entry


def entries(collection, report):
    return {clip: collection.entry(key).read_bytes() for clip, key in report.keys.items()}


@pytest.fixture(scope="module")
def one_process(small_synth, aisfx_teacher, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("one") / "cache")
    collection, report = pipeline.extract(aisfx_teacher, small_synth, store, batch_size=8, progress=False)
    return entries(collection, report)


def test_two_processes_write_the_entries_one_process_writes(one_process, small_synth, aisfx_teacher, tmp_path):
    store = Store(tmp_path / "cache")
    collection, report = pipeline.extract(
        aisfx_teacher, small_synth, store, batch_size=8, progress=False, devices=2, strategy="ddp_spawn"
    )
    assert report.built == len(small_synth.clips) and not report.failed
    assert entries(collection, report) == one_process  # bit for bit
    assert not list(collection.folder.glob(".extract-rank*"))  # the ranks' reports were merged and removed


def test_decoding_workers_and_batch_sizes_do_not_change_an_entry(one_process, small_synth, aisfx_teacher, tmp_path):
    store = Store(tmp_path / "cache")
    collection, report = pipeline.extract(aisfx_teacher, small_synth, store, batch_size=8, progress=False, workers=2)
    assert entries(collection, report) == one_process
    other = Store(tmp_path / "other")
    collection, report = pipeline.extract(aisfx_teacher, small_synth, other, batch_size=3, progress=False)
    for clip, blob in entries(collection, report).items():  # another batching: equal within float rounding
        a, b = read_entry(collection.entry(report.keys[clip])), np.load(__import__("io").BytesIO(blob[:-20]))
        assert (
            np.allclose(a, np.load(__import__("io").BytesIO(one_process[clip][:-20])), atol=1e-5) and b.shape == a.shape
        )


def test_clips_of_different_lengths_share_a_batch(tmp_path, aisfx_teacher):
    import soundfile as sf

    root = tmp_path / "mixed"
    (root / "audio").mkdir(parents=True)
    rows = ["path,labels"]
    rng = np.random.default_rng(0)
    for i, seconds in enumerate([2.5, 4.0, 2.5, 7.0, 3.1]):
        sf.write(
            root / "audio" / f"c{i}.wav", rng.standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1, 16000
        )
        rows.append(f"audio/c{i}.wav,{'ab'[i % 2]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    manifest = pipeline.prepare("folder", root, {"check_audio": False, "max_bad_fraction": 0.5}, progress=False)
    collection, report = pipeline.extract(
        aisfx_teacher, manifest, Store(tmp_path / "cache"), batch_size=5, progress=False
    )
    for clip in manifest.clips:
        stored = read_entry(collection.entry(report.keys[clip.clip_id]))
        alone = aisfx_teacher.embed_arrays([aisfx_teacher.read_source(manifest.audio_file(clip))])[0]
        assert stored.shape == alone.shape and np.allclose(stored, alone, atol=1e-5)
    assert sorted({read_entry(collection.entry(k)).shape[0] for k in report.keys.values()}) == [1, 2, 5]  # blocks
