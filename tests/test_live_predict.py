"""Streaming inference: audio fed in blocks of any size gives each window's scores as it completes and, at the end,
what ``predict`` gives for the whole recording."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from eastmir.audio import AudioDecodeError
from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.inference.live import LogMelStream, WindowStream
from eastmir.inference.predict import load_student
from eastmir.inference.windows import cut

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def student(short_run):
    return load_student(short_run)


def recording(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Tones under noise: something the student scores unevenly from window to window."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    tones = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 2000) * t) for _ in range(4))
    return (tones * (1 + np.sin(2 * np.pi * 0.3 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def streamed(student, audio: np.ndarray, sizes: Iterator[int], **options):
    """Feed ``audio`` in blocks of the ``sizes`` given and finish: ``(stream, live window scores, prediction)``."""
    stream = student.stream(**options)
    at, live = 0, []
    while at < len(audio):
        n = next(sizes)
        live += stream.feed(audio[at : at + n])
        at += n
    return stream, live, stream.finish("streamed")


def fixed(n: int):
    while True:
        yield n


@pytest.mark.parametrize("block", [1, 160, 1000, 48000])
def test_a_recording_fed_in_blocks_scores_as_predict_on_the_whole(student, block):
    audio = recording(7.3 if block > 1 else 3.1)
    whole = student.predict(audio, student.sample_rate)
    _, live, result = streamed(student, audio, fixed(block))
    assert len(result.windows) == len(whole.windows) >= 2
    np.testing.assert_allclose(result.window_starts, whole.window_starts)
    np.testing.assert_allclose(result.windows, whole.windows, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(result.probabilities, whole.probabilities, atol=TOLERANCE, rtol=0)
    assert result.predicted == whole.predicted
    # the windows came out as they completed: all but the closing one before the end
    assert len(live) >= len(whole.windows) - 1 and [w.start for w in live] == list(whole.window_starts[: len(live)])


@pytest.mark.parametrize("seconds", [0.9, 3.0, 4.5, 12.25])
def test_random_block_sizes_short_aligned_and_long_recordings(student, seconds):
    """A recording shorter than one window (padded), lengths whose last regular window does or does not end with
    the recording, and a long one; blocks of random sizes, empty ones included."""
    audio = recording(seconds, seed=3)
    rng = np.random.default_rng(int(seconds * 100))
    whole = student.predict(audio, student.sample_rate, aggregate="max")
    _, _, result = streamed(student, audio, iter(lambda: int(rng.integers(0, 5000)), None), aggregate="max")
    np.testing.assert_allclose(result.window_starts, whole.window_starts)
    np.testing.assert_allclose(result.probabilities, whole.probabilities, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(result.windows, whole.windows, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "config",
    [FrontendConfig(), FrontendConfig(preemphasis=0.97, window="symmetric", pad_mode="reflect", n_mels=64)],
    ids=["zero-padded", "authors"],
)
def test_frames_pieced_together_equal_the_front_end_on_the_whole(config):
    frontend = LogMelFrontend(config)
    audio = torch.from_numpy(recording(2.37, seed=5))
    rng = np.random.default_rng(1)
    stream, pieces, at = LogMelStream(frontend), [], 0
    while at < len(audio):
        n = int(rng.integers(1, 900))
        pieces.append(stream.push(audio[at : at + n]))
        at += n
    pieces.append(stream.finish())
    whole = frontend(audio[None])[0]
    together = torch.cat(pieces, -1)
    assert together.shape == whole.shape == (config.n_mels, config.n_frames(len(audio)))
    torch.testing.assert_close(together, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("time", [5, 40, 41, 47, 100])
def test_windows_cut_piece_by_piece_are_the_windows_cut_keeps(time):
    """For a waveform student the samples are the input: the windows of pieces equal ``cut``'s kept windows."""
    x = torch.arange(time, dtype=torch.float32)[None]
    windows, weights = cut(x, 40, 7, -1.0)
    expected = windows[0][weights > 0]
    stream, got, at = WindowStream(40, 7, -1.0), [], 0
    for n in [3, 0, 11, 1, 30, 60]:
        got += stream.push(x[0, at : at + n])
        at += n
    got += stream.push(x[0, at:]) + stream.finish()
    assert torch.equal(torch.stack([w for _, w in got]), expected)


def test_what_the_stream_holds_is_bounded(student):
    stream = student.stream()
    config = student.frontend_config
    bound = 4 * (config.n_mels * student.window + 2 * config.n_fft)
    held = []
    for block in np.array_split(recording(40.0, seed=7), 250):
        stream.feed(block)
        held.append(stream.held_bytes)
    assert max(held) <= bound and max(held[-50:]) <= max(held[:50]) + 4 * config.n_fft


def test_a_recording_too_short_and_a_finished_stream_are_refused(student):
    stream = student.stream()
    stream.feed(np.zeros(100, np.float32))
    with pytest.raises(AudioDecodeError, match="too short: 100 samples"):
        stream.finish()
    done = student.stream()
    done.feed(recording(1.0))
    done.finish()
    with pytest.raises(RuntimeError, match="this stream is finished"):
        done.feed(np.zeros(10, np.float32))


def test_predict_stream_prints_windows_as_they_complete_and_writes_what_predict_writes(short_run, tmp_path, capsys):
    import json

    import soundfile as sf

    from eastmir.cli import main

    clips = tmp_path / "clips"
    clips.mkdir()
    for i, seconds in enumerate((4.2, 1.3)):
        sf.write(clips / f"clip{i}.wav", recording(seconds, seed=i), 16000)
    sf.write(clips / "short.wav", recording(0.01), 16000)  # below one analysis window
    (clips / "broken.wav").write_bytes(b"RIFF not a wave file")
    outputs, skipped = {}, {}
    for flags in ([], ["--stream", "160"]):
        out = tmp_path / f"out{len(flags)}.jsonl"
        assert main(["predict", str(short_run), str(clips), "--format", "jsonl", "--out", str(out), *flags]) == 0
        outputs[len(flags)] = [json.loads(line) for line in out.read_text().splitlines()]
        err = capsys.readouterr().err
        assert (f"{clips / 'clip0.wav'} @ 0.00 s: " in err) == bool(flags)
        skipped[len(flags)] = [line for line in err.splitlines() if line.startswith("eastmir: skipped")]
    # the files predict cannot read or score are skipped, and named, as predict names them
    assert len(skipped[0]) == 2 and skipped[0] == skipped[2]
    assert "broken.wav" in skipped[0][0] and "short.wav: " in skipped[0][1] and "too short" in skipped[0][1]
    whole, live = outputs[0], outputs[2]
    assert [r["file"] for r in live] == [r["file"] for r in whole] and len(live) == 2
    for a, b in zip(live, whole):
        assert a["windows"] == b["windows"] and a["predicted"] == b["predicted"]
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=TOLERANCE)
