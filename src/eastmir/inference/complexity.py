"""``eastmir complexity``: Table 2 of the ISMIR paper, measured on this machine.

Every student and teacher is built with its published settings (random
weights: speed does not depend on them) and run at batch 1 on a 10 s clip;
all of them are timed **interleaved, round by round, in one process** (each
contender once per round, so a change of load or clock hits all of them
alike), with the thread count pinned and printed with the machine's load.
Each figure is iterations per second from the median call and from the
fastest one; every ratio is between two figures of the same run:

- students, waveform → probabilities (the front end included): eager
  PyTorch as the authors' code runs it (NCHW, float32, the front end on
  every call; ``tests/test_golden.py`` proves the models equal theirs: "the
  authors' way"), eager with BatchNorm folded and channels-last weights,
  the same under bfloat16 autocast (where the CPU has bf16 instructions, as
  ``eastmir predict`` runs it there), static int8 in PyTorch (``eastmir predict --precision int8``) and
  traced (``eastmir export --format torchscript --quantize int8``), TorchScript, ONNX Runtime, and ONNX
  Runtime with static int8 quantisation (``eastmir export --quantize int8``); the int8 ones are calibrated
  on the clip they are timed on;
- Mobile FCN and CP-ResNet alone on a 128 × 1000 log-mel, as in the paper's
  Table 2: each backend against the authors' way;
- teachers, waveform → embeddings (aiSFX, musicnn), against which every
  student's best backend is compared.

Backbone parameters exclude the classifier head, as in the paper. Each model's
multiply-accumulates per call are counted by PyTorch's ``FlopCounterMode``
(convolutions and matrix products; the STFT, pooling and activations are not
counted), and every figure shows the GFLOP/s it achieves (2 FLOP per MAC; for
int8 contenders, integer operations).
"""

from __future__ import annotations

import copy
import csv
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from eastmir.folding import optimise_for_inference
from eastmir.inference.calibration import quantize_static_int8
from eastmir.inference.model import InferenceModel
from eastmir.inference.predict import bf16_capability
from eastmir.inference.quiet import quiet_export
from eastmir.outputs import Outputs
from eastmir.paths import size_on_disk
from eastmir.registry import STUDENTS

AUTHORS_WAY = "eager (the authors' way)"
BF16 = "folded + channels-last, bf16"
INT8 = "PyTorch int8"
TORCHSCRIPT_INT8 = "TorchScript int8"
GPU = "GPU, folded + channels-last"  # (``--device cuda``) float32 without TF32, as ``predict --device cuda``
GPU_BF16 = "GPU, bf16"
GPU_BACKENDS = (GPU, GPU_BF16)
CORE_ML, CORE_ML_FLOAT16 = "Core ML", "Core ML float16"  # sizes only: Core ML runs on Apple's systems alone
BACKENDS = (
    AUTHORS_WAY,
    "eager, folded + channels-last",
    BF16,
    INT8,
    TORCHSCRIPT_INT8,
    "TorchScript",
    "ONNX Runtime",
    "ONNX Runtime int8",
    "LiteRT",
    "LiteRT int8",
)
ALL_BACKENDS = (*BACKENDS, *GPU_BACKENDS)  # the table's columns; the GPU's only where measured (--device cuda)


@dataclass
class Row:
    name: str
    kind: str  # student | teacher
    parameters: int
    input: str
    calls: dict[str, Callable[[], object]] = field(default_factory=dict, repr=False)  # backend → one call
    speed: dict[str, float] = field(default_factory=dict)  # backend → it/s of the median call
    fastest: dict[str, float] = field(default_factory=dict)  # backend → it/s of the fastest call
    macs: float | None = None  # multiply-accumulates per call (convolutions and matrix products), None: not counted
    sizes: dict[str, int] = field(default_factory=dict)  # exported format → bytes of its file

    def gflops(self, backend: str) -> float | None:
        """GFLOP/s the median call of ``backend`` achieves (2 FLOP per multiply-accumulate)."""
        return 2 * self.macs * self.speed[backend] / 1e9 if self.macs and backend in self.speed else None


def count_macs(call: Callable[[], object]) -> float | None:
    """Multiply-accumulates of one ``call`` (PyTorch's ``FlopCounterMode``: convolutions and matrix products),
    or ``None`` when it counts none (a model that does not run on PyTorch operators)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        call()
    flops = counter.get_total_flops()
    return flops / 2 if flops else None


def interleaved(rows: list[Row], least_rounds: int = 5, most_rounds: int = 50, seconds: float = 20.0) -> int:
    """Time every row's every call round by round (each once per round, after two warm-up calls) until
    ``seconds`` have passed (at least ``least_rounds``, at most ``most_rounds``); fill each row's ``speed``
    (median call) and ``fastest``. Returns the number of rounds."""
    contenders = [(row, backend, call) for row in rows for backend, call in row.calls.items()]
    for _, _, call in contenders:
        call(), call()
    times: dict[tuple[int, str], list[float]] = {(id(r), b): [] for r, b, _ in contenders}
    started, rounds = time.perf_counter(), 0
    while rounds < least_rounds or (time.perf_counter() - started < seconds and rounds < most_rounds):
        for row, backend, call in contenders:
            t = time.perf_counter()
            call()
            times[(id(row), backend)].append(time.perf_counter() - t)
        rounds += 1
    for row, backend, _ in contenders:
        measured = times[(id(row), backend)]
        row.speed[backend] = 1.0 / statistics.median(measured)
        row.fastest[backend] = 1.0 / min(measured)
    return rounds


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, threads: int, quantize: bool) -> Callable:
    import onnxruntime as ort

    with quiet_export():
        torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["y"], dynamo=True)
        if quantize:  # static int8 as `eastmir export --quantize int8` makes it, calibrated on the example
            quantized = path.with_suffix(".int8.onnx")
            quantize_static_int8(path, quantized, [{"x": example[:1].numpy()}])
            path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": example[:1].numpy()}
    return lambda: session.run(None, feed)


def _window(student: torch.nn.Module, frontend, wave: torch.Tensor):
    """``wave`` as one window of the window model (``export --format litert`` / ``coreml``): the model and its
    plan."""
    from eastmir.frontend import LogMelFrontend
    from eastmir.inference.window_model import WindowModel, WindowPlan

    size = frontend.n_frames(wave.shape[-1]) if frontend is not None else wave.shape[-1]
    front = LogMelFrontend(frontend).for_onnx() if frontend is not None else None
    return WindowModel(student, front, size, False).eval(), WindowPlan.through(size, size, frontend)


def _litert(
    student: torch.nn.Module, frontend, wave: torch.Tensor, name: str, workdir: Path, threads: int, quantize: bool
) -> tuple[Callable, int] | None:
    """``wave`` as one window of the LiteRT window model (``export --format litert``; int8 calibrated on that
    window) in the interpreter, and the file's size; ``None`` where the interpreter is not installed or the
    converter cannot be set up (the columns then show —)."""
    from eastmir.errors import RunError
    from eastmir.inference.litert import convert

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    model, plan = _window(student, frontend, wave)
    segment, valid = plan.inputs(wave[0].numpy())
    path = workdir / f"{name}{'-int8' if quantize else ''}.tflite"
    try:
        convert(model, plan, path, (segment, valid) if quantize else None)
    except RunError as err:
        print(f"eastmir: warning: LiteRT not measured: {err}")
        return None
    runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner()
    names = sorted(runner.get_input_details())
    feed = dict(zip(names, (segment, valid)))
    return (lambda: runner(**feed)), size_on_disk(path)


def check_students(students: list[str] | None) -> None:
    """Every name in ``students`` is a registered student (an unknown one is one line, before any work)."""
    for name in students or []:
        STUDENTS.get(name)


def measured_students() -> list[str]:
    """Every registered student but probes (they read an embedding, not audio)."""
    return [n for n in STUDENTS.names() if not STUDENTS.get(n).is_probe]


def on_device(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> dict[str, Callable[[], object]]:
    """The GPU contenders of ``model`` on input ``x`` (none on the CPU): a copy on ``device`` in float32 and
    under bf16 autocast, each call synchronised so its time is the device's."""
    if device.type == "cpu":
        return {}
    from eastmir.inference.devices import full_float32

    gpu, gx = copy.deepcopy(model).to(device).eval(), x.to(device)

    def run(bf16: bool) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad(), full_float32(device), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                out = gpu(gx)
            torch.cuda.synchronize(device)
            return out

        return call

    return {GPU: run(False), GPU_BF16: run(True)}


def student_row(name: str, threads: int, workdir: Path, device: torch.device | None = None) -> Row:
    """One student, waveform → probabilities, with the options and front end its class declares."""
    cls = STUDENTS.get(name)
    frontend = cls.complexity_frontend if cls.input_key.reads_logmel else None
    torch.manual_seed(0)
    student = STUDENTS.build(name, num_classes=20, **cls.complexity_options).eval()
    rate = frontend.sample_rate if frontend else 16000
    wave = torch.randn(1, 10 * rate) * 0.1
    plain = InferenceModel(student, frontend, False).eval()
    example = plain.frontend(wave) if frontend else wave
    fast_student = optimise_for_inference(student, example)
    fast = InferenceModel(fast_student, frontend, False).eval()
    export_student = optimise_for_inference(student, example, channels_last=False)
    exportable = InferenceModel(export_student, frontend, False).eval()
    if exportable.frontend is not None:
        exportable.frontend.for_onnx()  # as `eastmir export` exports it
    shape = f"{frontend.n_mels} × {example.shape[-1]} log-mel" if frontend else f"{wave.shape[-1]} samples"
    row = Row(name, "student", student.backbone_parameters(), f"10 s at {rate // 1000} kHz → {shape}")
    with torch.no_grad(), quiet_export():
        traced = torch.jit.freeze(torch.jit.trace(fast, wave, check_trace=False).eval())
    int8 = _int8(student, frontend, example)
    with torch.no_grad(), quiet_export():
        traced_int8 = torch.jit.freeze(torch.jit.trace(int8, wave, check_trace=False).eval()) if int8 else None
    row.macs = count_macs(lambda: plain(wave))
    row.calls = {
        AUTHORS_WAY: _no_grad(lambda: plain(wave)),
        BACKENDS[1]: _no_grad(lambda: fast(wave)),
        **({BF16: _no_grad(_bf16(lambda: fast(wave)))} if bf16_capability() else {}),
        **({INT8: _no_grad(lambda: int8(wave)), TORCHSCRIPT_INT8: _no_grad(lambda: traced_int8(wave))} if int8 else {}),
        "TorchScript": _no_grad(lambda: traced(wave)),
        "ONNX Runtime": _onnx(exportable, wave, workdir / f"{name}.onnx", threads, False),
        "ONNX Runtime int8": _onnx(exportable, wave, workdir / f"{name}.onnx", threads, True),
        **on_device(fast, wave, device or torch.device("cpu")),
    }
    for label, path in (("ONNX Runtime", f"{name}.onnx"), ("ONNX Runtime int8", f"{name}.int8.onnx")):
        # with the weights the exporter may have written beside the graph (``<file>.data``)
        row.sizes[label] = sum(p.stat().st_size for p in workdir.glob(path + "*") if p.suffix in (".onnx", ".data"))
    for label, quantize in (("LiteRT", False), ("LiteRT int8", True)):
        made = _litert(export_student, frontend, wave, name, workdir, threads, quantize)
        if made is not None:
            row.calls[label], row.sizes[label] = made
    for label, half in ((CORE_ML, False), (CORE_ML_FLOAT16, True)):  # no runtime here: its size only
        size = _coreml_size(export_student, frontend, wave, workdir / f"{name}{'-float16' if half else ''}", half)
        if size is not None:
            row.sizes[label] = size
    return row


def _coreml_size(student: torch.nn.Module, frontend, wave: torch.Tensor, stem: Path, half: bool) -> int | None:
    """Bytes of the Core ML package of ``wave`` as one window (``export --format coreml``), or ``None`` where
    coremltools is not installed."""
    from eastmir.errors import RunError
    from eastmir.inference.coreml import convert, coremltools_module, quiet_coremltools

    try:
        coremltools_module()
    except RunError:  # not installed
        return None
    model, plan = _window(student, frontend, wave)
    package = Path(f"{stem}.mlpackage")
    converted = convert(model, plan, "float16" if half else None)
    with quiet_coremltools():
        converted.save(str(package))
    return size_on_disk(package)


def _int8(student: torch.nn.Module, frontend, example: torch.Tensor) -> InferenceModel | None:
    """The student in static int8 (calibrated on ``example``, the timed clip), or ``None`` where PyTorch has no
    quantised backend."""
    from eastmir.inference.int8 import Int8Error, quantize_student_int8

    try:
        quantized, _, _ = quantize_student_int8(student, [example])
    except Int8Error:
        return None
    return InferenceModel(quantized, frontend, False).eval()


def _bf16(call: Callable[[], object]) -> Callable[[], object]:
    """``call`` under bfloat16 autocast, as ``eastmir predict --precision bf16`` runs the student."""

    def run() -> object:
        with torch.autocast("cpu", torch.bfloat16):
            return call()

    return run


def _no_grad(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return call()

    return run


def table2_students() -> list[str]:
    """The students the paper's Table 2 times alone on a 128 × 1000 log-mel (``Student.table2_options``)."""
    return [name for name in STUDENTS.names() if STUDENTS.get(name).table2_options is not None]


def table2_row(name: str, threads: int, workdir: Path, device: torch.device | None = None) -> Row:
    """The student alone on a 128 × 1000 log-mel, as the paper's Table 2 and the authors' measurements."""
    options = {**STUDENTS.get(name).complexity_options, **STUDENTS.get(name).table2_options}
    torch.manual_seed(0)
    student = STUDENTS.build(name, num_classes=20, **options).eval()
    x = torch.randn(1, 128, 1000)
    fast = optimise_for_inference(student, x)
    export_student = InferenceModel(optimise_for_inference(student, x, channels_last=False), None, False).eval()
    row = Row(name, "student (log-mel only)", student.backbone_parameters(), "128 × 1000 log-mel")
    row.macs = count_macs(lambda: student(x))
    row.calls = {
        AUTHORS_WAY: _no_grad(lambda: student(x)),
        BACKENDS[1]: _no_grad(lambda: fast(x)),
        "ONNX Runtime": _onnx(export_student, x, workdir / f"{name}-t2.onnx", threads, False),
        **on_device(fast, x, device or torch.device("cpu")),
    }
    return row


def teacher_rows() -> list[Row]:
    from eastmir.teachers.aisfx import AisfxTeacher
    from eastmir.teachers.musicnn import MusicnnTeacher

    rows = []
    for teacher, what in ((AisfxTeacher(), "7 blocks"), (MusicnnTeacher(), "3 patches")):
        wave = torch.randn(1, 10 * teacher.sample_rate) * 0.1
        row = Row(
            teacher.name,
            "teacher",
            teacher.parameter_count,
            f"10 s at {teacher.sample_rate // 1000} kHz → {what}",
        )
        row.calls[AUTHORS_WAY] = lambda t=teacher, w=wave: t.embed(w)
        row.macs = count_macs(row.calls[AUTHORS_WAY])
        rows.append(row)
    return rows


def measure(
    threads: int = 1, students: list[str] | None = None, seconds: float = 20.0, device: str = "cpu"
) -> list[Row]:
    """Build every contender, then time them all interleaved (:func:`interleaved`) with ``threads`` pinned;
    ``device`` ``cuda`` (or ``auto`` on a machine with one) adds each student on the GPU, float32 and bf16."""
    from eastmir.inference.devices import choose_device

    check_students(students)
    where = choose_device(device)
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in students or measured_students():
            rows.append(student_row(name, threads, Path(tmp), where))
        for name in table2_students():
            if not students or name in students:
                rows.append(table2_row(name, threads, Path(tmp), where))
        rows += teacher_rows()
        load = os.getloadavg()[0]
        rounds = interleaved(rows, seconds=seconds)
        MEASURED.update(threads=threads, rounds=rounds, load_before=load, load_after=os.getloadavg()[0])
    return rows


MEASURED: dict[str, float] = {}  # how the last measure() ran: threads, rounds, load average before and after


def best(row: Row) -> tuple[str, float]:
    backend = max(row.speed, key=row.speed.get)
    return backend, row.speed[backend]


def markdown(rows: list[Row], threads: int) -> str:
    def cell(r: Row, b: str) -> str:
        if b not in r.speed:
            return "—"
        rate = r.gflops(b)
        return f"{r.speed[b]:.1f} ({r.fastest.get(b, r.speed[b]):.1f})" + (f", {rate:.1f} GFLOP/s" if rate else "")

    how = MEASURED
    shown = [b for b in ALL_BACKENDS if b not in GPU_BACKENDS or any(b in r.speed for r in rows)]
    lines = [
        f"Batch 1, {threads} thread(s) pinned; every contender timed interleaved, round by round, in this run "
        f"({how.get('rounds', '?')} rounds; 1-minute load average {how.get('load_before', float('nan')):.2f} before, "
        f"{how.get('load_after', float('nan')):.2f} after). Iterations per second of the median call (of the fastest), "
        "and the GFLOP/s the median call achieves; backbone parameters without the head; multiply-accumulates per "
        "call of the convolutions and matrix products (GMAC).",
        "",
        "| model | kind | parameters (M) | GMAC per call | input | " + " | ".join(shown) + " |",
        "|---|---|---:|---:|---|" + "---:|" * len(shown),
    ]
    for r in rows:
        cells = [cell(r, b) for b in shown]
        macs = f"{r.macs / 1e9:.3f}" if r.macs else "—"
        lines.append(
            f"| {r.name} | {r.kind} | {r.parameters / 1e6:.3f} | {macs} | {r.input} | " + " | ".join(cells) + " |"
        )
    teachers = [r for r in rows if r.kind == "teacher"]
    students = [r for r in rows if r.kind == "student"]
    if teachers:
        lines += ["", "Each student's best backend against each teacher and the authors' way (median calls):", ""]
        lines += [
            "| student | best backend | it/s | × the authors' way | "
            + " | ".join(f"× {t.name}" for t in teachers)
            + " |",
            "|---|---|---:|---:|" + "---:|" * len(teachers),
        ]
        for s in students:
            backend, speed = best(s)
            ratios = [f"{speed / best(t)[1]:.1f}" for t in teachers]
            lines.append(
                f"| {s.name} | {backend} | {speed:.1f} | {speed / s.speed[AUTHORS_WAY]:.2f} | "
                + " | ".join(ratios)
                + " |"
            )
    sized = [r for r in rows if r.sizes]
    if sized:
        formats = [b for b in (*ALL_BACKENDS, CORE_ML, CORE_ML_FLOAT16) if any(b in r.sizes for r in sized)]
        lines += ["", "Size of each exported file (MB; float32 unless the column says int8 or float16):", ""]
        lines += ["| student | " + " | ".join(formats) + " |", "|---|" + "---:|" * len(formats)]
        for r in sized:
            cells = [f"{r.sizes[b] / 1e6:.2f}" if b in r.sizes else "—" for b in formats]
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    table2 = [r for r in rows if r.kind == "student (log-mel only)"]
    if table2:
        lines += ["", "On a 128 × 1000 log-mel (the paper's Table 2), each backend against the authors' way:", ""]
        others = [b for b in ALL_BACKENDS[1:] if any(b in r.speed for r in table2)]
        lines += [
            "| student | the authors' way (it/s) | " + " | ".join(f"× {b}" for b in others) + " |",
            "|---|---:|" + "---:|" * len(others),
        ]
        for r in table2:
            ratios = [f"{r.speed[b] / r.speed[AUTHORS_WAY]:.2f}" if b in r.speed else "—" for b in others]
            lines.append(f"| {r.name} | {r.speed[AUTHORS_WAY]:.1f} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str | Path, outputs: Outputs | None = None) -> None:
    fh = io.StringIO(newline="")
    writer = csv.writer(fh)
    columns = [b for b in ALL_BACKENDS if b in BACKENDS or any(b in r.speed for r in rows)]
    head = ["model", "kind", "parameters", "macs", "input", *columns]
    writer.writerow([*head, *(f"{b} (fastest)" for b in columns), *(f"{b} (GFLOP/s)" for b in columns)])
    for r in rows:
        speeds = [r.speed.get(b) for b in columns] + [r.fastest.get(b) for b in columns]
        writer.writerow([r.name, r.kind, r.parameters, r.macs, r.input, *speeds, *(r.gflops(b) for b in columns)])
    (outputs or Outputs()).write(path, fh.getvalue(), "--csv")


__all__ = [
    "ALL_BACKENDS",
    "AUTHORS_WAY",
    "BACKENDS",
    "GPU",
    "GPU_BF16",
    "INT8",
    "Row",
    "count_macs",
    "interleaved",
    "markdown",
    "measure",
    "write_csv",
]
