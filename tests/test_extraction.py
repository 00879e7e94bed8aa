"""Teacher extraction at scale: batches, decoding workers, two processes writing what one writes, bit for bit."""

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


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batch_size_workers_and_threads_do_not_change_a_bit(
    one_process, small_synth, aisfx_teacher, tmp_path, batch_size
):
    """An entry depends on its clip alone: not on the batch size, the clips beside it, the decoding workers,
    or the process's thread count (batched and multi-threaded kernels sum in another order)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        collection, report = pipeline.extract(
            aisfx_teacher, small_synth, Store(tmp_path / "one-thread"), batch_size=batch_size, progress=False
        )
    finally:
        torch.set_num_threads(before)
    assert entries(collection, report) == one_process
    collection, report = pipeline.extract(
        aisfx_teacher, small_synth, Store(tmp_path / "workers"), batch_size=batch_size, progress=False, workers=2
    )
    assert entries(collection, report) == one_process
    assert torch.get_num_threads() == before  # the process's setting is given back


def test_a_resume_ending_with_a_batch_of_one_writes_the_same_bytes(one_process, small_synth, aisfx_teacher, tmp_path):
    store = Store(tmp_path / "cache")
    collection, report = pipeline.extract(aisfx_teacher, small_synth, store, batch_size=8, progress=False)
    keep = sorted(report.keys)[: len(report.keys) - 9]  # as if killed: 9 entries missing, resumed in batches of 8 + 1
    for clip, key in report.keys.items():
        if clip not in keep:
            collection.entry(key).unlink()
    collection, report = pipeline.extract(aisfx_teacher, small_synth, store, batch_size=8, progress=False)
    assert report.built == 9 and report.cached == len(keep)
    assert entries(collection, report) == one_process


def test_log_mels_do_not_depend_on_the_thread_count(small_synth, tmp_path):
    import torch

    from eastmir.data.features import build_logmels
    from eastmir.frontend import FrontendConfig

    frontend = FrontendConfig(sample_rate=16000, n_mels=96)
    here, report = build_logmels(small_synth, Store(tmp_path / "here"), frontend, progress=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone, _ = build_logmels(small_synth, Store(tmp_path / "alone"), frontend, progress=False)
    finally:
        torch.set_num_threads(before)
    for key in report.keys.values():  # worker processes: test_store.py::test_worker_processes_build_the_same_entries
        assert alone.entry(key).read_bytes() == here.entry(key).read_bytes()


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


def test_every_entry_is_computed_alone_on_one_thread(small_synth, aisfx_teacher, tmp_path, monkeypatch):
    """The mechanism behind the bit-for-bit claims, which holds on every CPU (on some, such as AMD's with
    AVX2, batched and multi-threaded calls happen to round alike, so only this check fails there)."""
    import threading

    import torch

    from eastmir.data.features import LogMels, build_logmels
    from eastmir.frontend import FrontendConfig

    calls: list[tuple[int, int, int]] = []
    embed, logmels = aisfx_teacher.embed_arrays, LogMels.__call__

    def probe(arrays):
        calls.append((len(arrays), torch.get_num_threads(), threading.get_ident()))
        return embed(arrays)

    def probe_logmels(self, arrays):
        calls.append((len(arrays), torch.get_num_threads(), threading.get_ident()))
        return logmels(self, arrays)

    monkeypatch.setattr(aisfx_teacher, "embed_arrays", probe)
    monkeypatch.setattr(LogMels, "__call__", probe_logmels)
    torch.set_num_threads(2)
    pipeline.extract(aisfx_teacher, small_synth, Store(tmp_path / "a"), batch_size=8, progress=False)
    build_logmels(small_synth, Store(tmp_path / "b"), FrontendConfig(), progress=False)
    assert len(calls) == 2 * len(small_synth.clips)
    assert {(n, threads) for n, threads, _ in calls} == {(1, 1)}  # one clip, one intra-op thread, every call
    assert len({ident for *_, ident in calls}) >= 2  # clips run in parallel on threads instead
