"""``eastmir complexity``: Table 2 of the ISMIR paper, measured on this machine.

Every student and teacher is built with its published settings (random
weights: speed does not depend on them) and timed at batch 1 on a 10 s clip,
all in one run with the thread count pinned and printed:

- students, waveform → probabilities (the front end included), in PyTorch
  eager mode, eager with BatchNorm folded and channels-last weights,
  TorchScript, ONNX Runtime, and ONNX Runtime with int8 dynamic quantisation;
- Mobile FCN and CP-ResNet alone on a 128 × 1000 log-mel, as in the paper's
  Table 2 and the authors' code measured on this machine kind (REFERENCE.md
  §9: 14.2 and 5.4–6.0 it/s);
- teachers, waveform → embeddings (aiSFX; the others join as they are added).

Backbone parameters exclude the classifier head, as in the paper.
"""

from __future__ import annotations

import csv
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from eastmir.fetch import atomic_write
from eastmir.folding import optimise_for_inference
from eastmir.inference.export import InferenceModel, quiet_export
from eastmir.registry import STUDENTS

# the paper's Table 2 times these two alone on a 128 × 1000 log-mel: their options for it
TABLE2_OPTIONS = {"mobile_fcn": {"n_mels": 128}, "cp_resnet": {}}
PAPER_ITS = {"mobile_fcn": 319.3, "cp_resnet": 205.3, "harmonic_cnn": 164.2, "short_chunk_cnn": 196.4}  # RTX 2070 S
AUTHORS_HERE = {"mobile_fcn": 14.2, "cp_resnet": 5.7}  # their code, this machine kind, 128 × 1000 (REFERENCE §9)
BACKENDS = ("eager", "eager, folded + channels-last", "TorchScript", "ONNX Runtime", "ONNX Runtime int8")


def its(run: Callable[[], object], seconds: float = 2.0, least: int = 5) -> float:
    """Iterations per second: the median of timed calls after two warm-up calls."""
    run(), run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < least or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
        if len(times) >= 50:
            break
    return 1.0 / statistics.median(times)


@dataclass
class Row:
    name: str
    kind: str  # student | teacher
    parameters: int
    input: str
    speed: dict[str, float] = field(default_factory=dict)  # backend → it/s


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, threads: int, quantize: bool) -> Callable:
    import onnxruntime as ort

    with quiet_export():
        torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["y"], dynamo=True)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(path), str(path.with_suffix(".int8.onnx")), weight_type=QuantType.QInt8)
            path = path.with_suffix(".int8.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"x": example[:1].numpy()}
    return lambda: session.run(None, feed)


def measured_students() -> list[str]:
    """Every registered student but probes (they read an embedding, not audio)."""
    return [n for n in STUDENTS.names() if not STUDENTS.get(n).is_probe]


def student_row(name: str, threads: int, workdir: Path) -> Row:
    """One student, waveform → probabilities, with the options and front end its class declares."""
    cls = STUDENTS.get(name)
    frontend = cls.complexity_frontend if cls.input_key == "logmel" else None
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
    shape = f"{frontend.n_mels} × {example.shape[-1]} log-mel" if frontend else f"{wave.shape[-1]} samples"
    row = Row(name, "student", student.backbone_parameters(), f"10 s at {rate // 1000} kHz → {shape}")
    with torch.no_grad():
        row.speed["eager"] = its(lambda: plain(wave))
        row.speed[BACKENDS[1]] = its(lambda: fast(wave))
        with quiet_export():
            traced = torch.jit.freeze(torch.jit.trace(fast, wave, check_trace=False).eval())
        row.speed["TorchScript"] = its(lambda: traced(wave))
    row.speed["ONNX Runtime"] = its(_onnx(exportable, wave, workdir / f"{name}.onnx", threads, False))
    row.speed["ONNX Runtime int8"] = its(_onnx(exportable, wave, workdir / f"{name}.onnx", threads, True))
    return row


def table2_row(name: str, threads: int, workdir: Path) -> Row:
    """The student alone on a 128 × 1000 log-mel, as the paper's Table 2 and the authors' measurements."""
    options = {**STUDENTS.get(name).complexity_options, **TABLE2_OPTIONS[name]}
    torch.manual_seed(0)
    student = STUDENTS.build(name, num_classes=20, **options).eval()
    x = torch.randn(1, 128, 1000)
    fast = optimise_for_inference(student, x)
    export_student = InferenceModel(optimise_for_inference(student, x, channels_last=False), None, False).eval()
    row = Row(name, "student (log-mel only)", student.backbone_parameters(), "128 × 1000 log-mel")
    with torch.no_grad():
        row.speed["eager"] = its(lambda: student(x))
        row.speed[BACKENDS[1]] = its(lambda: fast(x))
    row.speed["ONNX Runtime"] = its(_onnx(export_student, x, workdir / f"{name}-t2.onnx", threads, False))
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
        row.speed["eager"] = its(lambda t=teacher, w=wave: t.embed(w))
        rows.append(row)
    return rows


def measure(threads: int = 1, students: list[str] | None = None) -> list[Row]:
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in students or measured_students():
            rows.append(student_row(name, threads, Path(tmp)))
        for name in TABLE2_OPTIONS:
            if not students or name in students:
                rows.append(table2_row(name, threads, Path(tmp)))
    return rows + teacher_rows()


def best(row: Row) -> tuple[str, float]:
    backend = max(row.speed, key=row.speed.get)
    return backend, row.speed[backend]


def markdown(rows: list[Row], threads: int) -> str:
    lines = [
        f"Batch 1, {threads} thread(s), iterations per second (median); backbone parameters without the head.",
        "",
        "| model | kind | parameters (M) | input | " + " | ".join(BACKENDS) + " |",
        "|---|---|---:|---|" + "---:|" * len(BACKENDS),
    ]
    for r in rows:
        cells = [f"{r.speed[b]:.1f}" if b in r.speed else "—" for b in BACKENDS]
        lines.append(f"| {r.name} | {r.kind} | {r.parameters / 1e6:.3f} | {r.input} | " + " | ".join(cells) + " |")
    teachers = [r for r in rows if r.kind == "teacher"]
    students = [r for r in rows if r.kind == "student"]
    if teachers:
        lines += ["", "Student speed against each teacher's (waveform in, best backend of each):", ""]
        lines += [
            "| student | best backend | it/s | " + " | ".join(f"× {t.name}" for t in teachers) + " |",
            "|---|---|---:|" + "---:|" * len(teachers),
        ]
        for s in students:
            backend, speed = best(s)
            ratios = [f"{speed / best(t)[1]:.1f}" for t in teachers]
            lines.append(f"| {s.name} | {backend} | {speed:.1f} | " + " | ".join(ratios) + " |")
    table2 = [r for r in rows if r.kind == "student (log-mel only)"]
    if table2:
        lines += ["", "Against the authors' code on this machine kind (128 × 1000 log-mel, REFERENCE.md §9):", ""]
        lines += ["| student | ours, best backend (it/s) | authors' (it/s) | ratio |", "|---|---|---:|---:|"]
        for r in table2:
            backend, speed = best(r)
            lines.append(
                f"| {r.name} | {speed:.1f} ({backend}) | {AUTHORS_HERE[r.name]} | {speed / AUTHORS_HERE[r.name]:.2f} |"
            )
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str | Path) -> None:
    fh = io.StringIO(newline="")
    writer = csv.writer(fh)
    writer.writerow(["model", "kind", "parameters", "input", *BACKENDS])
    for r in rows:
        writer.writerow([r.name, r.kind, r.parameters, r.input, *[r.speed.get(b) for b in BACKENDS]])
    atomic_write(path, fh.getvalue())


__all__ = ["BACKENDS", "Row", "markdown", "measure", "write_csv"]
