"""Shipping the student: BatchNorm folding, predict, export (ONNX, TorchScript, int8), complexity."""

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from eastmir import load_run, load_student, pipeline
from eastmir.cli import main
from eastmir.config import load_config
from eastmir.errors import RunError
from eastmir.folding import fold_batchnorm
from eastmir.inference.export import export
from eastmir.inference.model import inference_model
from eastmir.inference.parity import Runner
from eastmir.inference.run import LoadedRun
from eastmir.outputs import Outputs
from eastmir.registry import STUDENTS
from eastmir.training.system import EastSystem

# student → (config overrides on synth/baseline, training clip seconds)
STUDENTS_TO_SHIP = {
    "mobile_fcn": ([], 3.0),
    "fcn": (["student={name: fcn, n_mels: 96}"], 3.0),
    "cp_resnet": (["student={name: cp_resnet}"], 3.0),
    "short_chunk_cnn": (
        [
            "student={name: short_chunk_cnn}",
            "frontend={sample_rate: 16000, n_fft: 512, win_length: 512, hop_length: 256, n_mels: 128, fmax: 8000}",
        ],
        3.69,
    ),
    "harmonic_cnn": (["student={name: harmonic_cnn}"], 5.0),
}


def untrained_run(name, tmp_path, *more):
    """A run as load_run returns it, without training (export needs only its config and weights)."""
    overrides, seconds = STUDENTS_TO_SHIP[name]
    config = load_config("synth/baseline", [*overrides, f"data.clip_seconds={seconds}", *more], workdir=tmp_path)
    torch.manual_seed(0)
    system = EastSystem(config, 4, classes=["a", "b", "c", "d"], clip_seconds=seconds)
    with torch.no_grad():  # non-trivial batch-norm statistics
        system.train()
        key = system.student.input_key
        shape = (8, config.frontend.n_mels, 200) if key == "logmel" else (8, 80000)
        system.student(torch.randn(*shape))
    system.eval()
    return LoadedRun(tmp_path, tmp_path / "none.ckpt", system, system.classes, system.config, None)


@pytest.mark.parametrize("name", list(STUDENTS_TO_SHIP))
def test_batchnorm_folding_is_exact_for_every_student(name, tmp_path):
    run = untrained_run(name, tmp_path)
    x = torch.randn(2, 96, 160) if name in ("mobile_fcn", "fcn") else None
    if x is None:
        x = torch.randn(2, 128, 300) if name in ("cp_resnet", "short_chunk_cnn") else torch.randn(2, 80000)
    folded, pairs = fold_batchnorm(run.student, x)
    remaining = [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # the input BatchNorm of SC-CNN and the one after HCNN's harmonic filterbank follow no convolution: they stay
    assert pairs >= 3 and len(remaining) == (1 if name in ("short_chunk_cnn", "harmonic_cnn") else 0)
    with torch.no_grad():
        assert torch.allclose(folded(x).logits, run.student(x).logits, atol=1e-5)


class _FreedConvolutionOutput(torch.nn.Module):
    """A convolution whose output is dropped before a BatchNorm runs on another, newly made tensor."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 3, 1), torch.nn.BatchNorm2d(3)
        self.bn.running_mean.fill_(0.5)

    def forward(self, x):
        for _ in range(20):  # freed outputs: CPython hands their ids to the next tensors made
            self.conv(x)
        return self.bn(x * 2.0)


def test_batchnorm_folding_pairs_only_a_convolution_s_own_output():
    model, x = _FreedConvolutionOutput().eval(), torch.randn(2, 3, 4, 4)
    folded, pairs = fold_batchnorm(model, x)
    assert pairs == 0
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", list(STUDENTS_TO_SHIP))
def test_exports_equal_eager_on_three_lengths(name, fmt, tmp_path):
    run = untrained_run(name, tmp_path)
    path, card, notes = export(run, fmt, tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}")
    worst = float(re.search(r"samples\): ([0-9.e+-]+) \(mean", notes[0]).group(1))
    assert worst < 1e-4, notes
    assert card.is_file() and "| a |" in card.read_text()
    runner, (reference, samples) = Runner(path), inference_model(run, fast=False)
    x = np.random.default_rng(1).standard_normal((3, samples + 5000)).astype(np.float32) * 0.1  # a batch of 3 too
    with torch.no_grad():
        assert np.allclose(runner(x), reference(torch.from_numpy(x)).numpy(), atol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_authors_front_end_exports_too(fmt, tmp_path):
    """Pre-emphasis (one sample shorter), a symmetric window and reflect padding inside the exported graph."""
    authors = ["frontend.preemphasis=0.97", "frontend.window=symmetric", "frontend.pad_mode=reflect"]
    run = untrained_run("mobile_fcn", tmp_path, *authors)
    assert run.config.frontend.preemphasis == 0.97
    exported, _, notes = export(run, fmt, tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}")
    assert float(re.search(r"samples\): ([0-9.e+-]+) \(mean", notes[0]).group(1)) < 1e-4, notes
    assert exported.is_file()


def test_export_metadata_names_the_classes(tmp_path):
    import onnx

    run = untrained_run("mobile_fcn", tmp_path)
    onnx_path, _, _ = export(run, "onnx", tmp_path / "m.onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}["eastmir"])
    assert meta["classes"] == ["a", "b", "c", "d"] and meta["sample_rate"] == 16000 and meta["clip_seconds"] == 3.0
    ts_path, _, _ = export(run, "torchscript", tmp_path / "m.pt", outputs=Outputs(overwrite=True))  # m.md again
    files = {"eastmir.json": ""}
    with pytest.deprecated_call():  # TorchScript is deprecated in recent PyTorch
        torch.jit.load(str(ts_path), _extra_files=files)
    assert json.loads(files["eastmir.json"])["classes"] == ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def trained(small_synth, small_synth_embeddings, workdir):
    cfg = load_config("synth/baseline", ["name=shipped", "trainer.max_epochs=2"], workdir=workdir)
    return pipeline.fit(cfg, progress=False)


def test_fit_stores_validation_thresholds(trained, small_synth):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == set(small_synth.classes)
    assert all(0.0 <= t <= 1.0 for t in metrics["thresholds"].values())


def test_predict_equals_the_test_time_outputs_and_survives_a_corrupt_file(
    trained, small_synth, store, tmp_path, capsys
):
    from eastmir.data.features import build_logmels
    from eastmir.data.store import read_entry

    test_clips = small_synth.split("test")[:6]
    folder = tmp_path / "incoming"
    folder.mkdir()
    for clip in test_clips:
        shutil.copy(small_synth.audio_file(clip), folder / f"{clip.clip_id}.wav")
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    out = tmp_path / "predictions.jsonl"
    args = ["predict", str(trained), str(folder), "--format", "jsonl", "--out", str(out), "--no-progress"]
    assert main([*args, "--precision", "float32"]) == 0
    assert "broken.wav" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(test_clips)  # every readable file predicted
    run = load_run(trained)
    logmels, report = build_logmels(small_synth, store, run.config.frontend, progress=False)
    for line, clip in zip(lines, sorted(test_clips, key=lambda c: c.clip_id)):
        assert line["file"].endswith(f"{clip.clip_id}.wav") and line["windows"] == 1
        x = torch.from_numpy(read_entry(logmels.entry(report.keys[clip.clip_id]))[None].copy())
        with torch.no_grad():
            expected = torch.sigmoid(run.student(x).logits)[0].numpy()
        got = np.array([line["probabilities"][c] for c in run.classes])
        assert np.allclose(got, expected, atol=1e-5)


def test_predict_reports_the_corrupt_file_on_one_line(trained, small_synth, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    shutil.copy(small_synth.audio_file(small_synth.clips[0]), tmp_path / "good.wav")
    assert main(["predict", str(trained), str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("eastmir: skipped")]
    assert len(skipped) == 1 and skipped[0].startswith(f"eastmir: skipped {tmp_path / 'broken.wav'}: ")
    assert captured.err.splitlines()[0].startswith("eastmir: predicting in ")  # the precision, and why
    assert "| " + str(tmp_path / "good.wav") in captured.out


def test_long_recordings_are_windowed_and_aggregated(trained, tmp_path):
    student = load_student(trained)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16000 * 8) * 0.1).astype(np.float32)  # 8 s; the run trained on 2.5 s clips
    prediction = student.predict(audio, 16000)
    assert len(prediction.windows) == 6  # starts 0, 1.25, 2.5, 3.75, 5.0 and 5.5 (the last ends with the audio)
    assert np.allclose(prediction.window_starts, [0, 1.25, 2.5, 3.75, 5.0, 5.5], atol=0.05)  # whole frames
    assert np.allclose(prediction.probabilities, prediction.windows.mean(0))
    assert np.allclose(student.predict(audio, 16000, aggregate="max").probabilities, prediction.windows.max(0))
    assert len(student.predict(audio, 16000, hop=2.5).windows) == 4  # 0, 2.5, 5.0 and 5.5 s
    resampled = student.predict(audio[::2], 8000)  # another sample rate: resampled to the run's
    assert resampled.probabilities.shape == (len(student.classes),)
    short = student.predict(audio[:8000], 16000)  # shorter than a window: padded like a short training clip
    assert len(short.windows) == 1
    assert set(prediction.predicted) <= set(student.classes)


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_predict_output_formats(trained, small_synth, tmp_path, fmt, capsys):
    files = [str(small_synth.audio_file(c)) for c in small_synth.clips[:3]]
    curve = ["--curve"] if fmt == "jsonl" else []  # (the per-window curve is JSON Lines only)
    assert main(["predict", str(trained), *files, "--format", fmt, "--no-progress", *curve]) == 0
    out = capsys.readouterr().out
    if fmt == "jsonl":
        rows = [json.loads(line) for line in out.splitlines()]
        assert len(rows) == 3 and "curve" in rows[0] and set(rows[0]["probabilities"]) == set(small_synth.classes)
    elif fmt == "csv":
        assert out.splitlines()[0] == "file,predicted," + ",".join(small_synth.classes) and len(out.splitlines()) == 4
    else:
        assert out.splitlines()[0] == "| file | predicted | top classes | windows |" and len(out.splitlines()) == 5


def test_int8_export_reports_its_test_map_change(trained, tmp_path, capsys):
    assert (
        main(["export", str(trained), "--format", "onnx", "--quantize", "int8", "--out", str(tmp_path / "q.onnx")]) == 0
    )
    out = capsys.readouterr().out
    assert "int8 test mAP" in out and "against" in out and "in float32" in out
    assert (tmp_path / "q.md").is_file() and "int8 test mAP" in (tmp_path / "q.md").read_text()
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static (QDQ): activations quantised too
    from eastmir.inference.calibration import INT8_TOLERANCE
    from eastmir.inference.parity import Runner

    audio = np.random.default_rng(5).standard_normal((1, 16000 * 3)).astype(np.float32) * 0.2
    int8 = Runner(tmp_path / "q.onnx")(audio)
    assert main(["export", str(trained), "--out", str(tmp_path / "f.onnx"), "--no-progress"]) == 0
    exact = Runner(tmp_path / "f.onnx")(audio)
    float_ops = {node.op_type for node in onnx.load(str(tmp_path / "f.onnx")).graph.node}
    assert "STFT" not in float_ops and "MatMul" in float_ops  # the spectrum by products (fast in ONNX Runtime)
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    dequantised = {o for node in graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    products = [node for node in graph.node if node.op_type == "MatMul"]
    assert products and not any(set(node.input) & dequantised for node in products)  # the front end: float32
    assert any(set(node.input) & dequantised for node in graph.node if node.op_type == "Conv")  # convolutions: int8
    assert 0 < np.abs(int8 - exact).max() < INT8_TOLERANCE
    # TorchScript int8: the student's convolution blocks in PyTorch's int8 (predict --precision int8's model)
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                str(trained),
                "--format",
                "torchscript",
                "--quantize",
                "int8",
                "--out",
                str(tmp_path / "q.pt"),
                "--overwrite",
            ]
        )
        == 0
    )
    assert "int8 test mAP" in capsys.readouterr().out
    traced = Runner(tmp_path / "q.pt")(audio)
    assert 0 < np.abs(traced - exact).max() < INT8_TOLERANCE
    scripted = torch.jit.load(str(tmp_path / "q.pt"))
    assert any("quantized" in n.kind() for n in scripted.inlined_graph.nodes())  # integer kernels, not float


def test_a_broken_int8_export_fails_its_parity_check(trained, tmp_path, monkeypatch):
    from eastmir.inference import model as model_module

    real = model_module.int8_student

    def broken(run, purpose):  # a quantisation that moved the classifier: the check must see it
        student = real(run, purpose)
        with torch.no_grad():
            student.head.bias.add_(2.0)
        return student

    monkeypatch.setattr(model_module, "int8_student", broken)
    with pytest.raises(RunError, match="differs from predict"):
        export(load_run(trained), "torchscript", tmp_path / "bad.pt", "int8")


INT8_MODULES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def int8_convolutions(model):
    return [m for m in model.modules() if "Conv" in type(m).__name__ and type(m).__module__.startswith(INT8_MODULES)]


def test_int8_prediction_is_close_to_float32_and_refused_without_training_clips(trained, tmp_path, capsys):
    audio = np.random.default_rng(3).standard_normal(16000 * 5).astype(np.float32) * 0.1
    from eastmir.inference.calibration import INT8_TOLERANCE

    exact = load_student(trained, precision="float32").predict(audio, 16000)
    int8 = load_student(trained, precision="int8")
    assert len(int8_convolutions(int8.model)) == 14  # every convolution of Mobile FCN's eight blocks, in int8
    got = int8.predict(audio, 16000)
    assert 0 < np.abs(got.windows - exact.windows).max() < INT8_TOLERANCE
    assert main(["predict", str(trained), "--precision", "int8", "--no-progress", str(tmp_path / "none.wav")]) == 2
    assert "nothing to predict" in capsys.readouterr().err  # inputs are checked before the run loads
    sf.write(tmp_path / "one.wav", np.zeros(16000 * 3, np.float32), 16000)
    assert main(["predict", str(trained), "--precision", "int8", "--no-progress", str(tmp_path / "one.wav")]) == 0
    assert "predicting in int8 (static" in capsys.readouterr().err
    from eastmir.inference.predict import TrainedStudent

    run = load_run(trained)  # a run whose data is not on this machine
    run.config = run.config.model_copy(update={"data": run.config.data.model_copy(update={"root": tmp_path / "x"})})
    with pytest.raises(RunError, match="--precision int8 calibrates on the run's training clips, which are not"):
        TrainedStudent(run, precision="int8")


@pytest.mark.parametrize("name", list(STUDENTS_TO_SHIP))
def test_int8_quantises_every_student_s_convolutions_and_stays_close(name, tmp_path):
    from eastmir.inference.int8 import conv_blocks, quantize_student_int8

    run = untrained_run(name, tmp_path)
    student = run.student
    key = student.input_key
    generator = torch.Generator().manual_seed(1)
    shape = (4, run.config.frontend.n_mels, 300) if key == "logmel" else (4, 80000)
    inputs = [torch.randn(*shape, generator=generator) for _ in range(3)]
    quantised, done, left = quantize_student_int8(student, inputs)
    assert done == len(conv_blocks(student)) and left == 0
    convs = [m for parent, attr in conv_blocks(student) for m in getattr(parent, attr).modules()]
    assert len(int8_convolutions(quantised)) == sum(isinstance(m, torch.nn.Conv2d) for m in convs) > 0
    with torch.no_grad():
        exact, approx = student(inputs[0]).logits, quantised(inputs[0]).logits
    assert not torch.equal(exact, approx)
    assert float((approx - exact).norm() / exact.norm()) < 0.15  # int8 rounding, not a different model


def test_a_teacher_lr_run_cannot_predict_from_audio(small_synth, small_synth_embeddings, workdir):
    cfg = load_config("synth/teacher_lr", ["name=lr_ship", "trainer.max_epochs=1"], workdir=workdir)
    with pytest.raises(RunError, match="TeacherLR run: it reads teacher embeddings"):
        load_student(pipeline.fit(cfg, progress=False))


def test_complexity_table_measures_in_one_run(capsys, litert_converter):
    from eastmir.inference.complexity import BACKENDS, markdown, measure

    rows = measure(threads=1, students=["mobile_fcn"], seconds=3)
    names = [(r.name, r.kind) for r in rows]
    assert names == [
        ("mobile_fcn", "student"),
        ("mobile_fcn", "student (log-mel only)"),
        ("aisfx", "teacher"),
        ("musicnn", "teacher"),
    ]
    from eastmir.inference.complexity import BF16
    from eastmir.inference.predict import bf16_capability

    expected = set(BACKENDS) if bf16_capability() else set(BACKENDS) - {BF16}  # bf16 where the CPU has it
    assert set(rows[0].speed) == expected and all(v > 0 for v in rows[0].speed.values())
    sizes = rows[0].sizes  # the exported files: int8 holds the convolutions' weights in a quarter of the bytes
    assert set(sizes) == {"ONNX Runtime", "ONNX Runtime int8", "LiteRT", "LiteRT int8", "Core ML", "Core ML float16"}
    assert 0.4 < sizes["Core ML float16"] / sizes["Core ML"] < 0.6  # float16 weights: half the bytes
    assert sizes["LiteRT int8"] < 0.5 * sizes["LiteRT"] and sizes["ONNX Runtime int8"] < 0.5 * sizes["ONNX Runtime"]
    assert "Size of each exported file (MB" in markdown(rows, 1)
    assert rows[0].parameters == 301_248 and rows[2].parameters == 4_686_144
    assert STUDENTS.get("mobile_fcn").min_frames == 96


def test_complexity_times_its_contenders_round_by_round_and_only_compares_figures_of_one_run():
    from eastmir.inference.complexity import AUTHORS_WAY, BACKENDS, Row, interleaved, markdown

    order: list[str] = []
    student = Row("s", "student", 10, "x", calls={b: (lambda b=b: order.append(b)) for b in BACKENDS[:2]})
    teacher = Row("t", "teacher", 20, "x", calls={AUTHORS_WAY: lambda: order.append("teacher")})
    assert interleaved([student, teacher], least_rounds=3, seconds=0) == 3
    one_round = [*BACKENDS[:2], "teacher"]
    warm_up = [c for c in one_round for _ in range(2)]
    assert order == warm_up + one_round * 3  # two warm-up calls each, then one call each per round
    assert all(student.fastest[b] >= student.speed[b] > 0 for b in BACKENDS[:2])
    student.speed = {AUTHORS_WAY: 10.0, BACKENDS[1]: 40.0}
    teacher.speed = {AUTHORS_WAY: 2.0}
    table2 = Row("s", "student (log-mel only)", 10, "x", speed={AUTHORS_WAY: 5.0, BACKENDS[1]: 15.0})
    text = markdown([student, table2, teacher], 1)
    assert f"| s | {BACKENDS[1]} | 40.0 | 4.00 | 20.0 |" in text  # × the authors' way, × the teacher
    assert "| s | 5.0 | 3.00 |" in text and "14.2" not in text


def test_bf16_prediction_is_close_to_float32_and_chosen_only_where_the_cpu_has_bf16(trained, small_synth, monkeypatch):
    from eastmir.inference import predict

    audio = np.random.default_rng(3).standard_normal(16000 * 5).astype(np.float32) * 0.1
    exact = load_student(trained, precision="float32").predict(audio, 16000)
    half = load_student(trained, precision="bf16").predict(audio, 16000)
    assert np.abs(half.windows - exact.windows).max() < 2e-2 and not np.array_equal(half.windows, exact.windows)
    monkeypatch.setattr(predict, "bf16_capability", lambda: None)
    assert predict.choose_precision("auto")[0] == "float32"
    assert "emulates" in predict.choose_precision("bf16")[1]
    monkeypatch.setattr(predict, "bf16_capability", lambda: "AMX")
    assert predict.choose_precision("auto") == (
        "bf16",
        "predicting in bf16 (this CPU has AMX; --precision float32, bf16 or int8 to choose)",
    )
    with pytest.raises(RunError, match="precision must be one of float32, bf16"):
        load_student(trained, precision="fp8")


def test_complexity_counts_the_multiply_accumulates_a_hand_count_gives():
    from eastmir.inference.complexity import Row, count_macs
    from eastmir.inference.model import InferenceModel

    frontend = STUDENTS.get("mobile_fcn").complexity_frontend
    student = STUDENTS.build("mobile_fcn", num_classes=20, n_mels=96).eval()
    model = InferenceModel(student, frontend, False).eval()
    by_hand: list[int] = []

    def count(module, inputs, out):  # each output value is one dot product of the layer's fan-in
        fan_in = (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            if isinstance(module, torch.nn.Conv2d)
            else module.in_features
        )
        by_hand.append(out.numel() * fan_in)

    for m in student.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    macs = count_macs(lambda: model(torch.randn(1, 160000)))
    frames, bins = 501, frontend.n_fft // 2 + 1
    assert macs == sum(by_hand) + frames * bins * frontend.n_mels  # the layers, and the mel filterbank's product
    row = Row("s", "student", 1, "x", speed={"a": 10.0}, macs=macs)
    assert row.gflops("a") == pytest.approx(2 * macs * 10 / 1e9) and row.gflops("b") is None
