"""``eastmir export --format coreml``: the window model as a Core ML package, float32 and float16, checked on
Linux by running the saved package's ML program (:mod:`eastmir.inference.mil_run`) against ``predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from eastmir.cli import main
from eastmir.inference import load_run


@pytest.fixture(scope="module")
def trained(small_synth, small_synth_embeddings, workdir):
    """The synth Baseline run ``test_inference`` ships (two epochs; one run for the modules that use it)."""
    from eastmir import pipeline
    from eastmir.config import load_config

    cfg = load_config("synth/baseline", ["name=shipped", "trainer.max_epochs=2"], workdir=workdir)
    return pipeline.fit(cfg, progress=False)


class Assorted(nn.Module):
    """Operations with the settings the interpreter must get right: strides, dilation, groups, padding,
    pooling with a ceil, strided slices, reductions, a sigmoid and a softmax."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
        self.b = nn.Conv1d(4, 3, 5, padding=2)
        self.head = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, 2, 20, 30)
        y = torch.relu(self.a(x))
        y = nn.functional.max_pool2d(y, (3, 2), (2, 2), ceil_mode=True)
        y = nn.functional.avg_pool2d(y, 2)
        y = y[:, :, ::2, 1:].mean(dim=2)  # (1, 4, t)
        y = torch.sigmoid(self.b(y)) * torch.log(y[:, :3].abs() + 1e-3) - y[:, 1:]
        return torch.softmax(self.head(y.amax(dim=-1)), dim=1)


def test_the_interpreter_runs_a_converted_program_as_torch_runs_the_module(tmp_path):
    import coremltools as ct

    from eastmir.inference.coreml import quiet_coremltools, read_program
    from eastmir.inference.mil_run import run_program

    model = Assorted().eval()
    x = torch.randn(1, 2, 20, 30)
    with quiet_coremltools():
        program = torch.export.export(model, (x,)).run_decompositions({})
        converted = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32)
        converted.save(str(tmp_path / "assorted.mlpackage"))
    program, interface = read_program(tmp_path / "assorted.mlpackage")
    (name,) = [n for n in interface if n != "x"]
    got = run_program(program, {"x": x.numpy()})[name]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def test_coreml_float32_and_float16_from_a_trained_run(trained, tmp_path, capsys):
    import coremltools as ct

    from eastmir.inference.coreml import CoreMLRunner
    from eastmir.inference.predict import load_student
    from eastmir.inference.window_model import window_model

    f32, f16 = tmp_path / "model.mlpackage", tmp_path / "model-float16.mlpackage"
    assert main(["export", str(trained), "--format", "coreml", "--out", str(f32), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Core ML predicts only on Apple's systems" in out and "largest difference to `eastmir predict`" in out
    assert (f32 / "Manifest.json").is_file()
    card = f32.with_suffix(".md").read_text()
    assert "Core ML predicts only on Apple's systems" in card and "input `segment`" in card
    args = ["export", str(trained), "--format", "coreml", "--quantize", "float16", "--out", str(f16)]
    assert main([*args, "--no-progress"]) == 0
    assert "float16 test mAP" in capsys.readouterr().out
    package = ct.models.MLModel(str(f16), skip_model_load=True)
    meta = json.loads(package.user_defined_metadata["eastmir"])
    assert meta["classes"] == load_run(trained).classes and meta["window"]["segment_samples"] > 0
    # the packages as an app drives them, on a recording the parity check never saw
    run, student = load_run(trained), load_student(trained, fast=False)
    plan = window_model(run)[1]
    rng = np.random.default_rng(3)
    audio = (0.2 * rng.standard_normal(16000 * 5)).astype(np.float32)
    expected = student.predict(audio, 16000).probabilities
    classes = len(run.classes)
    np.testing.assert_allclose(CoreMLRunner(f32, plan, classes)(audio[None])[0], expected, atol=1e-4)
    half = CoreMLRunner(f16, plan, classes)(audio[None])[0]
    assert 0 < np.abs(half - expected).mean() < 2e-2  # rounded to float16 after every operation: not bit-equal
    # a second export replaces the package eastmir wrote (in the run's export folder, whose ledger says so);
    # a folder of the user's is never replaced
    for _ in range(2):
        assert main(["export", str(trained), "--format", "coreml", "--no-progress"]) == 0
    assert (trained / "export" / "model.mlpackage" / "Manifest.json").is_file()
    assert not list((trained / "export").glob(".model.mlpackage.replaced-*"))
    mine = tmp_path / "mine.mlpackage"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["export", str(trained), "--format", "coreml", "--out", str(mine), "--no-progress"]) != 0
    assert "eastmir did not write it; pass --overwrite" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"


def test_an_operation_the_interpreter_does_not_know_is_named_not_guessed():
    from types import SimpleNamespace

    from eastmir.inference.mil_run import OPS, UncheckableOperation, run_program

    op = SimpleNamespace(op_type="gelu", inputs={}, outputs=[])
    program = SimpleNamespace(functions={"main": SimpleNamespace(inputs={}, operations=[op], outputs=[])})
    assert "gelu" not in OPS
    with pytest.raises(UncheckableOperation, match="gelu"):
        run_program(program, {})
