"""``eastmir export --format litert``: the window model (front end inside) as a ``.tflite`` file, float32 and
static int8, checked against ``predict`` in the LiteRT interpreter as an app drives it; the window model and
its plan themselves; a broken LiteRT or Core ML export refused."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from eastmir.cli import main
from eastmir.errors import RunError
from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.inference import load_run
from eastmir.inference.window_model import WindowedRunner, WindowPlan, window_model


@pytest.fixture(scope="module")
def trained(small_synth, small_synth_embeddings, workdir):
    """The synth Baseline run ``test_inference`` ships (two epochs; one run for both modules)."""
    from eastmir import pipeline
    from eastmir.config import load_config

    cfg = load_config("synth/baseline", ["name=shipped", "trainer.max_epochs=2"], workdir=workdir)
    return pipeline.fit(cfg, progress=False)


def tones(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize(
    "config",
    [
        FrontendConfig(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=64),
        FrontendConfig(
            sample_rate=16000,
            n_fft=1024,
            win_length=800,
            hop_length=320,
            n_mels=96,
            preemphasis=0.97,
            window="symmetric",
            pad_mode="reflect",
        ),
    ],
)
@pytest.mark.parametrize("seconds", [0.2, 1.0, 2.37, 6.5])
def test_a_window_plan_cuts_the_frames_predict_cuts(config, seconds):
    """Each segment's frames (the front end without its own padding) are the whole recording's frames of that
    window; the windows are predict's; a short recording's frames past its end are marked not valid."""
    from eastmir.inference.windows import starts

    size, step = 100, 50
    plan = WindowPlan(size, step, config.hop_length, config.n_fft, config.preemphasis, config.pad_mode == "reflect")
    audio = tones(seconds)
    front = LogMelFrontend(config)
    whole = front(torch.from_numpy(audio)[None])[0]  # (mels, frames)
    segments, valid = plan.inputs(audio)
    frames = whole.shape[-1]
    first = starts(frames, size, step)
    assert len(segments) == len(first) and segments.shape[1] == plan.segment_samples
    for segment, count, start in zip(segments, valid, first):
        got = front.padded_frames(torch.from_numpy(segment)[None])[0]
        real = int(count)
        assert real == min(size, frames - start)
        np.testing.assert_allclose(got[:, :real].numpy(), whole[:, start : start + real].numpy(), atol=2e-4)


def test_the_window_model_driven_as_an_app_equals_predict(trained):
    """In PyTorch, before any conversion: the window model and its plan give predict's scores."""
    from eastmir.inference.predict import load_student

    run = load_run(trained)
    model, plan = window_model(run, fast=False)

    def score(segment, valid):
        with torch.no_grad():
            return model(torch.from_numpy(segment), torch.from_numpy(valid)).numpy()

    runner = WindowedRunner(trained, score, plan)
    student = load_student(trained, fast=False)
    for seconds in (0.1, 1.0, 3.3, 9.0):
        audio = tones(seconds, seed=int(seconds * 10))
        expected = student.predict(audio, 16000).probabilities
        np.testing.assert_allclose(runner(audio[None])[0], expected, atol=1e-5)


def ops_of(path) -> Counter:
    from ai_edge_litert.interpreter import Interpreter

    return Counter(op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details())


def int8_convolutions(path) -> int:
    """Convolutions whose weights the file holds in int8."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return sum(
        1
        for op in interpreter._get_ops_details()
        if "CONV" in op["op_name"] and tensors[op["inputs"][1]]["dtype"] == np.int8
    )


def test_litert_float32_and_int8_from_a_trained_run(trained, litert_converter, tmp_path, capsys):
    from eastmir.inference.litert import LiteRTRunner
    from eastmir.inference.predict import load_student

    f32, q8 = tmp_path / "model.tflite", tmp_path / "model-int8.tflite"
    assert main(["export", str(trained), "--format", "litert", "--out", str(f32), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "largest difference to `eastmir predict` on audio of 5 lengths" in out
    card = f32.with_suffix(".md").read_text()
    assert "input `segment`" in card and "input `valid`" in card and '"segment_samples"' in card
    assert "STFT" not in " ".join(ops_of(f32)) and ops_of(f32)["BATCH_MATMUL"] >= 1  # the spectrum by products
    assert int8_convolutions(f32) == 0
    args = ["export", str(trained), "--format", "litert", "--quantize", "int8", "--out", str(q8), "--no-progress"]
    assert main(args) == 0
    assert "int8 test mAP" in capsys.readouterr().out
    assert int8_convolutions(q8) >= 3 and q8.stat().st_size < 0.5 * f32.stat().st_size
    assert "BATCH_MATMUL" in ops_of(q8)  # the front end stays float32
    # the files as an app drives them, on a recording the parity check never saw
    run, student = load_run(trained), load_student(trained, fast=False)
    plan = window_model(run)[1]
    audio = tones(5.5, seed=9)
    expected = student.predict(audio, 16000).probabilities
    np.testing.assert_allclose(LiteRTRunner(f32, plan)(audio[None])[0], expected, atol=1e-4)
    from eastmir.inference.calibration import INT8_TOLERANCE

    assert 0 < np.abs(LiteRTRunner(q8, plan)(audio[None])[0] - expected).mean() < INT8_TOLERANCE


@pytest.mark.parametrize("fmt, suffix", [("litert", ".tflite"), ("coreml", ".mlpackage")])
def test_a_broken_phone_export_fails_its_parity_check(fmt, suffix, trained, litert_converter, tmp_path, monkeypatch):
    """A conversion that moved the classifier's bias (or any weight): the check must refuse the file, and
    leave nothing behind."""
    import importlib

    from eastmir.inference.export import export

    module = importlib.import_module(f"eastmir.inference.{fmt}")
    real = module.window_model

    def broken(run, fast=True):
        model, plan = real(run, fast)
        with torch.no_grad():
            model.student.head.bias.add_(2.0)
        return model, plan

    monkeypatch.setattr(module, "window_model", broken)
    with pytest.raises(RunError, match="differs from predict"):
        export(load_run(trained), fmt, tmp_path / f"bad{suffix}")
    assert not (tmp_path / f"bad{suffix}").exists() and not (tmp_path / "bad.md").exists()


def test_a_converter_python_that_is_not_there_is_one_line(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EASTMIR_CONVERTER_PYTHON", str(tmp_path / "nowhere" / "python"))
    assert main(["export", str(trained), "--format", "litert", "--out", str(tmp_path / "m.tflite")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("eastmir: error: EASTMIR_CONVERTER_PYTHON=") and "no such file" in err[-1]
