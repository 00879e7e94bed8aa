import numpy as np
import pytest
import torch

from eastmir.teachers.aisfx import (
    AISFX_WEIGHTS,
    BLOCK,
    AisfxEmbeddingNet,
    AisfxFrontend,
    AisfxTeacher,
    load_aisfx_state,
    to_blocks,
)
from eastmir.teachers.weights import WeightsUnavailable, fetch_wheel_member


def test_weights_load_strictly_with_published_parameter_count(aisfx_teacher):
    net = AisfxEmbeddingNet()
    state = load_aisfx_state(fetch_wheel_member(AISFX_WEIGHTS))
    missing, unexpected = net.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    assert sum(p.numel() for p in net.parameters()) == 4_686_144
    # the pretrained batch-norm statistics are real, not defaults
    assert not torch.allclose(net.conv_block1.bn1.running_var, torch.ones(64))


def test_frame_and_block_arithmetic():
    # frames start at -1024, 0, 1024, ... while inside the signal
    assert AisfxFrontend.n_frames(44100) == 45  # starts -1024 … 44032
    assert AisfxFrontend.n_frames(1024) == 2
    frames = torch.zeros(1, 250, 96)
    assert to_blocks(frames).shape == (1, 4, BLOCK, 96)  # starts 0, 50, 100, 150; 200 is partial → dropped
    assert to_blocks(torch.zeros(1, 30, 96)).shape == (1, 1, BLOCK, 96)  # short clip: one padded block


def test_frontend_matches_direct_computation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000).astype(np.float32) * 0.1
    ours = AisfxFrontend()(torch.from_numpy(x)[None])[0].numpy()
    padded = np.concatenate([np.zeros(1024), x, np.zeros(4096)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2047)  # symmetric Hann
    fb = AisfxFrontend().filterbank.numpy().astype(np.float64)
    for k in (0, 3, ours.shape[0] - 1):
        frame = padded[k * 1024 : k * 1024 + 2048] * window
        power = np.abs(np.fft.rfft(frame)) ** 2
        ref = np.log10(1e4 * power @ fb + 1) / 9.457798957824707
        assert np.allclose(ours[k], ref, atol=1e-4)


def test_embeddings_are_finite_with_frame_period(aisfx_teacher):
    audio = torch.randn(2, 44100 * 5) * 0.1
    emb = aisfx_teacher.embed(audio)
    n_frames = AisfxFrontend.n_frames(44100 * 5)
    assert emb.shape == (2, (n_frames - BLOCK) // 50 + 1, 512)
    assert torch.isfinite(emb).all() and emb.std() > 0
    assert aisfx_teacher.frame_seconds == pytest.approx(50 * 1024 / 44100)


def test_wheel_checksum_is_enforced(tmp_path):
    fake = tmp_path / "aisfx-0.1.2-py2.py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(WeightsUnavailable, match="sha256"):
        fetch_wheel_member(AISFX_WEIGHTS, weights_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_weights_dir_without_weights_says_so(tmp_path):
    with pytest.raises(WeightsUnavailable, match=r"checkpoint\.pth"):
        AisfxTeacher(weights_dir=tmp_path)


def test_extracted_entries_are_complete_and_resume(small_synth, small_synth_embeddings, aisfx_teacher, store):
    from eastmir import pipeline
    from eastmir.data.store import read_entry

    collection, report = small_synth_embeddings
    assert collection.producer.shape == (None, 512) and not report.failed
    assert set(report.keys) == {c.clip_id for c in small_synth.clips}
    for clip in small_synth.clips[:5]:
        e = read_entry(collection.entry(report.keys[clip.clip_id]))
        assert e.shape == (1, 512) and np.isfinite(e).all()  # 2.5 s clip: one block
    victim = collection.entry(report.keys[small_synth.clips[0].clip_id])
    kept = collection.entry(report.keys[small_synth.clips[1].clip_id])
    before = kept.stat().st_mtime_ns
    victim.unlink()  # as if interrupted
    _, again = pipeline.extract(aisfx_teacher, small_synth, store, progress=False)
    assert victim.exists() and kept.stat().st_mtime_ns == before
    assert again.built == 1 and again.cached == len(small_synth.clips) - 1


def test_identity_names_the_weights(aisfx_teacher):
    identity = aisfx_teacher.identity()
    assert identity["weights_sha256"] == AISFX_WEIGHTS.files[0][1]
    assert identity["name"] == "aisfx" and identity["sample_rate"] == 44100
