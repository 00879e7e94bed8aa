"""``eastmir export RUN --format onnx|torchscript [--quantize int8]``: one file to ship.

The exported model takes a mono waveform ``(batch, samples)`` at the run's
sample rate, of any length (the time axis is dynamic; at least the student's
minimum), and returns probabilities ``(batch, classes)`` (sigmoid, or softmax
for a single-label run) for the whole input it is given: the log-mel front
end is inside the graph (in ONNX, its spectrum as matrix products,
:class:`~eastmir.audio.MatmulPowerSpectrum`: ONNX Runtime's STFT operator
took 4× as long),
BatchNorm is folded into the convolutions. For long recordings, window them as
``eastmir predict`` does (the training clip length, half of it as hop) and
average (the exported model does exactly that for any input longer than a
clip). Class names, thresholds, sample rate and the rest ride along: ONNX
``metadata_props`` (key ``eastmir``, JSON) or TorchScript ``_extra_files``
(``eastmir.json``). A model card (``<file>.md``) is written beside it.

``--quantize int8``: static int8, calibrated on 32 of the run's training
clips (which must be on this machine): for ONNX, ONNX Runtime's QDQ
quantisation of the convolutions (the front end and the classifier stay
float32); for TorchScript, the student's convolution blocks in PyTorch's int8
(:mod:`eastmir.inference.int8`, what ``predict --precision int8`` runs). The
export prints the change in test mAP, measured on the run's test split when its
data is on this machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eastmir import __version__
from eastmir.audio import FrontendConfig, LogMelFrontend, preprocessing
from eastmir.errors import RunError
from eastmir.folding import optimise_for_inference
from eastmir.inference.run import LoadedRun
from eastmir.inference.windows import HOP_FRACTION, aggregate, cut, cut_scripted
from eastmir.outputs import Outputs

FORMATS = ("onnx", "torchscript")


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Keep the exporters' progress lines, tracer notes and shape-solver logs off the screen."""
    loggers = [logging.getLogger(name) for name in ("", "torch", "torch.onnx", "torch.fx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    # torch's exporter logs "torchvision is not installed" through loggers with levels of their own
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class InferenceModel(nn.Module):
    """Waveform ``(batch, samples)`` at the run's rate → probabilities ``(batch, classes)`` of the whole input.

    The input is cut into windows of the training clip length exactly as
    ``eastmir predict`` cuts it (:mod:`eastmir.inference.windows`: a hop of
    ``step``, the last window ending with the input, a short input padded with
    silence) and the windows' probabilities are averaged, so the exported file
    and ``predict`` give the same scores for any length.
    """

    def __init__(
        self,
        student: nn.Module,
        frontend: FrontendConfig | None,
        single_label: bool,
        size: int | None = None,
        step: int | None = None,
    ) -> None:
        """``size`` / ``step``: the window and hop in input frames; ``None``: the whole input is one window
        (what ``eastmir complexity`` times)."""
        super().__init__()
        self.frontend = LogMelFrontend(frontend) if frontend is not None else None
        self.student = student
        self.single_label = single_label
        self.size, self.step = size, step
        self.pad = frontend.silence if frontend is not None else 0.0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.frontend(waveform) if self.frontend is not None else waveform
        if self.size is None or self.step is None:
            logits = self.student(x).logits
            return torch.softmax(logits, dim=1) if self.single_label else torch.sigmoid(logits)
        window = cut_scripted() if torch.jit.is_tracing() else cut  # the tracer would fix the length
        windows, weights = window(x, self.size, self.step, self.pad)  # (batch, n, ..., size)
        batch, n = windows.shape[:2]
        logits = self.student(windows.reshape(batch * n, *windows.shape[2:])).logits
        probabilities = torch.softmax(logits, dim=1) if self.single_label else torch.sigmoid(logits)
        return aggregate(probabilities.reshape(batch, n, -1), weights)


def window_of(run: LoadedRun) -> tuple[int, int, int]:
    """``(clip samples, window, step)``: the training clip in samples, and the window and hop in the student's
    input frames (log-mel frames, or samples for a waveform student)."""
    frontend = run.config.frontend
    seconds = run.system.hparams.get("clip_seconds") or run.config.data.clip_seconds
    if not seconds:
        raise RunError(f"{run.directory}: the run does not say its clip length; set data.clip_seconds")
    samples = round(float(seconds) * frontend.sample_rate)
    if run.input_key == "logmel":
        size, per_second = frontend.n_frames(samples), frontend.sample_rate / frontend.hop_length
    else:
        size, per_second = samples, frontend.sample_rate
    return samples, size, max(1, round(float(seconds) * HOP_FRACTION * per_second))


def inference_model(run: LoadedRun, fast: bool = True, int8: bool = False) -> tuple[InferenceModel, int]:
    """The run's waveform → probabilities model and its training clip length in samples; ``int8``: the student
    in static int8 (:func:`int8_student`)."""
    if run.input_key == "embedding":
        raise RunError(f"{run.directory} is a TeacherLR run: it needs its teacher's embeddings, not audio")
    frontend = run.config.frontend
    samples, size, step = window_of(run)
    student = run.student.eval()
    if int8:
        student = int8_student(run, "--quantize int8")
    elif fast:
        example = (
            LogMelFrontend(frontend)(torch.zeros(1, samples)) if run.input_key == "logmel" else torch.zeros(1, samples)
        )
        student = optimise_for_inference(student, example, channels_last=False)
    single = run.config.task_kind == "single_label"
    model = InferenceModel(student, frontend if run.input_key == "logmel" else None, single, size, step).eval()
    model.requires_grad_(False)
    return model, samples


def min_samples(run: LoadedRun) -> int:
    """The shortest waveform the exported model and ``predict`` accept: one analysis window of the front end
    (shorter inputs are refused; longer ones shorter than a clip are padded with silence, as in training)."""
    return run.config.frontend.win_length


def metadata(run: LoadedRun, quantize: str | None) -> dict[str, Any]:
    metrics = run.metrics or {}
    config = run.config
    return {
        "eastmir_version": __version__,
        "classes": run.classes,
        "task": config.task_kind,
        "thresholds": metrics.get("thresholds"),
        "sample_rate": config.frontend.sample_rate,
        "clip_seconds": run.system.hparams.get("clip_seconds"),
        "hop_seconds": HOP_FRACTION * float(run.system.hparams.get("clip_seconds") or 0),
        "min_samples": min_samples(run),
        "frontend": asdict(config.frontend),
        "input": "waveform (batch, samples), float32, mono, at sample_rate, at least min_samples long",
        "output": "probabilities (batch, classes): sigmoid (multilabel) or softmax (single_label) per window of "
        "clip_seconds every hop_seconds, averaged (as eastmir predict does)",
        "system": config.system_label,
        "student": config.student.name,
        "teacher": config.teacher_label,
        "dataset": metrics.get("dataset") or config.data.dataset,
        "test_metrics": metrics.get("test"),
        "quantize": quantize,
    }


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise RunError(f"ONNX export needs {err.name}: pip install 'eastmir[export]'") from None


def export_onnx(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    _need_onnx()
    import onnx

    model, samples = inference_model(run)
    if model.frontend is not None:
        model.frontend.for_onnx()  # the spectrum by matrix products: ONNX Runtime's STFT operator is slow
    # a batch of 2 and several pooled frames: sizes of 1 would be specialised by the exporter
    example = torch.zeros(2, max(2 * samples, 4 * min_samples(run)))
    dims = ({0: torch.export.Dim("batch", min=1, max=4096), 1: torch.export.Dim("samples", min=min_samples(run))},)
    float_path = path if not quantize else path.with_name(path.stem + ".float32.onnx")
    with quiet_export():
        torch.onnx.export(
            model,
            (example,),
            str(float_path),
            input_names=["waveform"],
            output_names=["probabilities"],
            dynamo=True,
            dynamic_shapes=dims,
            verbose=False,
        )
    if quantize:
        quantize_int8(run, float_path, path)
    proto = onnx.load(str(path))  # with any weights the exporter wrote beside it (<file>.data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "eastmir", json.dumps(metadata(run, quantize))
    onnx.save(proto, str(path), save_as_external_data=False)  # one self-contained file (weights below 2 GB)
    for extra in (path.with_name(path.name + ".data"), float_path, float_path.with_name(float_path.name + ".data")):
        if extra != path:
            extra.unlink(missing_ok=True)
    return path


CALIBRATION_CLIPS = 32
INT8_TOLERANCE = 5e-2  # the largest probability change an int8 export may show against predict (float32)


def calibration_clips(
    run: LoadedRun, most: int = CALIBRATION_CLIPS, purpose: str = "--quantize int8"
) -> list[np.ndarray]:
    """Up to ``most`` clips of the run's training split (one clip long, at its rate, in manifest order): what
    int8 calibration measures the activations' ranges on."""
    from eastmir.audio import load_audio
    from eastmir.data.manifest import load_manifest
    from eastmir.errors import EastmirError

    root = run.config.data.root
    try:
        manifest = load_manifest(root)
        clips = manifest.split("train")[:most]
    except EastmirError:
        clips = []
    if not clips:
        raise RunError(
            f"{purpose} calibrates on the run's training clips, which are not on this machine ({root}, the data.root "
            "its checkpoint holds): prepare or link the dataset there, or "
            + ("export without --quantize" if purpose == "--quantize int8" else "choose another precision")
        )
    rate = run.config.frontend.sample_rate
    length = round(float(run.system.hparams.get("clip_seconds") or run.config.data.clip_seconds) * rate)
    waves = []
    for clip in clips:
        audio = load_audio(manifest.audio_file(clip), rate)
        waves.append(np.pad(audio[:length], (0, max(0, length - len(audio)))).astype(np.float32))
    return waves


def int8_student(run: LoadedRun, purpose: str) -> nn.Module:
    """The run's student with its convolution blocks in static int8 (:mod:`eastmir.inference.int8`), calibrated
    on :func:`calibration_clips` (one clip each, through the run's front end, in batches of 8). ``purpose``: the
    option that asked for it, named in the errors."""
    from eastmir.inference.int8 import Int8Error, quantize_student_int8

    waves = torch.from_numpy(np.stack(calibration_clips(run, purpose=purpose)))
    frontend = LogMelFrontend(run.config.frontend) if run.input_key == "logmel" else None
    with torch.no_grad():
        inputs = [frontend(w) if frontend is not None else w for w in waves.split(8)]
    try:
        model, _, _ = quantize_student_int8(run.student.eval(), inputs)
    except Int8Error as err:
        raise RunError(f"{run.directory}: {err}; run without {purpose}") from None
    return model


def quantize_int8(run: LoadedRun, float_path: Path, path: Path) -> None:
    """Static int8 quantisation of an exported model (ONNX Runtime, QDQ): the convolutions with per-channel int8
    weights and uint8 activations whose ranges are calibrated on the run's training clips; the front end and the
    classifier stay float32. Dynamic quantisation was 3.4× slower than float32 on a CPU with VNNI; static lets
    ONNX Runtime run integer convolutions end to end."""
    quantize_static_int8(float_path, path, ({"waveform": w[None]} for w in calibration_clips(run)))


def quantize_static_int8(float_path: Path, path: Path, feeds) -> None:
    """``float_path`` → ``path`` in static int8 (QDQ, per-channel int8 weights, uint8 activations), calibrated
    on ``feeds``: an iterable of ONNX input dicts. What ``export --quantize int8`` and ``complexity`` run: the
    convolutions in int8, the front end and the classifier float32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with quiet_export():
        quantize_static(
            str(float_path),
            str(path),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],  # not the front end's products: its power spans decades
        )


def export_torchscript(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    model, samples = inference_model(run, int8=quantize == "int8")
    with torch.no_grad(), quiet_export():
        traced = torch.jit.freeze(torch.jit.trace(model, torch.zeros(2, samples), check_trace=False).eval())
    with quiet_export():  # TorchScript is deprecated in recent PyTorch (it says so on every save and load)
        torch.jit.save(traced, str(path), _extra_files={"eastmir.json": json.dumps(metadata(run, quantize))})
    return path


class Runner:
    """Runs an exported file: ``Runner(path)(waveform (batch, samples)) -> probabilities``."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.module = None
            meta = self.session.get_modelmeta().custom_metadata_map.get("eastmir")
        else:
            extra = {"eastmir.json": ""}
            with quiet_export():
                self.module = torch.jit.load(str(path), _extra_files=extra)
            self.session = None
            meta = extra["eastmir.json"]
        self.metadata = json.loads(meta) if meta else {}
        self.minimum = self.metadata.get("min_samples")

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        waveform = np.asarray(waveform, np.float32)
        if self.minimum is not None and waveform.shape[-1] < self.minimum:
            raise RunError(
                f"{self.path}: an input of {waveform.shape[-1]} samples is shorter than the model's minimum of "
                f"{self.minimum} (one analysis window)"
            )
        if self.session is not None:
            return self.session.run(None, {"waveform": np.asarray(waveform, np.float32)})[0]
        with torch.no_grad():
            return self.module(torch.from_numpy(np.asarray(waveform, np.float32))).numpy()


def test_split_scores(run: LoadedRun, score) -> dict[str, float] | None:
    """Test metrics of ``score(waveforms (1, samples)) -> probabilities``, or None when the data is not here."""
    from eastmir.audio import load_audio
    from eastmir.data.manifest import load_manifest
    from eastmir.errors import EastmirError
    from eastmir.metrics import masked_metrics

    try:
        manifest = load_manifest(run.config.data.root)
    except EastmirError:
        return None
    sample_rate = run.config.frontend.sample_rate
    seconds = run.system.hparams.get("clip_seconds") or run.config.data.clip_seconds
    length = round(float(seconds) * sample_rate)
    probs, targets, masks = [], [], []
    for clip in manifest.split("test"):
        try:
            audio = load_audio(manifest.audio_file(clip), sample_rate)
        except Exception:
            continue
        audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
        probs.append(score(audio[None])[0])
        targets.append(clip.labels)
        masks.append(clip.mask)
    if not probs:
        return None
    return masked_metrics(torch.tensor(np.stack(probs)), torch.tensor(np.stack(targets)), torch.tensor(np.stack(masks)))


VARIES = 1e-2  # outputs must differ across the parity inputs by more than this for the check to see anything


def parity(
    run: LoadedRun, runner: Runner, samples: int, tolerance: float | None = 1e-3, least_spread: float | None = None
) -> tuple[str, float]:
    """Check the exported file against ``eastmir predict`` (eager, unfolded) on audio of several lengths, from
    the shortest accepted to several clips; raise :class:`RunError` on a difference above ``tolerance``.
    Returns the note and how much the outputs vary across the inputs; with ``least_spread``, outputs that vary
    less are an error too (the check could not have seen a broken export)."""
    from eastmir.inference.predict import TrainedStudent

    reference = TrainedStudent(run, fast=False)
    rng = np.random.default_rng(0)
    lengths = (min_samples(run), samples // 3 + 17, samples, samples // 2 + 1234 + samples, 3 * samples + 5)
    worst, outputs = 0.0, []
    for i, length in enumerate(lengths):
        t = np.arange(length) / reference.sample_rate
        x = (0.3 * np.sin(2 * np.pi * (110 * 2 ** (i / 2)) * t) + 0.05 * rng.standard_normal(length)).astype(np.float32)
        expected = reference.predict(x, reference.sample_rate).probabilities
        got = runner(x[None])[0]
        outputs.append(got)
        worst = max(worst, float(np.abs(got - expected).max()))
    spread = float(np.ptp(np.stack(outputs), axis=0).max())
    if tolerance is not None and worst > tolerance:
        raise RunError(f"{runner.path}: the exported model differs from predict by {worst:.2e}; please report this")
    if least_spread is not None and spread < least_spread:
        raise RunError(
            f"{runner.path}: the parity check's outputs vary by only {spread:.2e} across its inputs, so it cannot "
            "tell a broken export from a right one; please report this"
        )
    note = (
        f"largest difference to `eastmir predict` on audio of {len(lengths)} lengths ({lengths[0]} to "
        f"{lengths[-1]} samples): {worst:.2e}; the outputs themselves vary by up to {spread:.2e} across them"
    )
    return note, spread


def with_varied_weights(run: LoadedRun, seed: int = 0) -> LoadedRun:
    """A copy of ``run`` whose outputs vary widely with the input, for the parity check when the run's own
    barely do (a model trained for an epoch, or one whose units went silent): freshly initialised student
    weights (seeded), BatchNorm statistics measured on a batch of seeded tones and noise (so every stage sees
    unit-scale activations), and the classifier's weights × 10."""
    import copy

    from eastmir.registry import STUDENTS

    varied = copy.deepcopy(run)
    student, config = varied.system.student, run.config.student
    torch.manual_seed(seed)
    student.load_state_dict(STUDENTS.build(config.name, num_classes=len(run.classes), **config.options).state_dict())
    rate = run.config.frontend.sample_rate
    seconds = float(run.system.hparams.get("clip_seconds") or run.config.data.clip_seconds or 10.0)
    t = torch.arange(round(seconds * rate)) / rate
    generator = torch.Generator().manual_seed(seed)
    waves = torch.stack(
        [
            0.3 * torch.sin(2 * torch.pi * 110 * 2 ** (i / 3) * t) + 0.1 * torch.randn(len(t), generator=generator)
            for i in range(8)
        ]
    )
    inputs = LogMelFrontend(run.config.frontend)(waves) if student.input_key == "logmel" else waves
    norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batch
    student.train()
    with torch.no_grad():
        student(inputs)
        head = getattr(student, "head", None)
        if isinstance(head, nn.Linear):
            head.weight.mul_(10.0)
    student.eval()
    return varied


def model_card(run: LoadedRun, path: Path, fmt: str, quantize: str | None, notes: list[str]) -> Path:
    meta = metadata(run, quantize)
    test = meta["test_metrics"] or {}
    lines = [
        f"# {meta['system']}: {meta['student']} student" + (f", {meta['teacher']} teacher" if meta["teacher"] else ""),
        "",
        f"Exported by eastmir {__version__} from `{run.directory}` ({run.checkpoint.name}) as {fmt}"
        + (f", {quantize} static quantisation (calibrated on the run's training clips)" if quantize else "")
        + ".",
        "",
        "## Input and output",
        f"- input `waveform`: float32 `(batch, samples)`, mono, {meta['sample_rate']} Hz, any length of at least "
        f"{min_samples(run)} samples (one analysis window; shorter inputs give no meaningful answer)",
        f"- output `probabilities`: `(batch, {len(meta['classes'])})`, "
        + ("softmax (one class per clip)" if meta["task"] == "single_label" else "sigmoid per class (multi-label)")
        + f" of windows of {meta['clip_seconds']} s (the training clip) every {meta['hop_seconds']:g} s, the last "
        "ending with the input and a shorter input padded with silence, averaged: the scores of `eastmir predict`",
        f"- front end inside: log-mel {json.dumps(meta['frontend'])}",
        "",
        "## Preprocessing (outside the model)",
        f"- {preprocessing(meta['sample_rate'])}",
        "",
        "## Classes and thresholds",
        "",
        "| class | threshold |",
        "|---|---:|",
        *[
            f"| {c} | {(meta['thresholds'] or {}).get(c, 'arg-max' if meta['task'] == 'single_label' else 0.5)} |"
            for c in meta["classes"]
        ],
        "",
        "## Training and test",
        f"- data: {meta['dataset']} (`{run.config.data.root}`); system {meta['system']}, λ = {run.config.lam}",
        "- test split: " + (", ".join(f"{k} {v:.4f}" for k, v in test.items()) or "not measured"),
        *[f"- {n}" for n in notes],
        "",
    ]
    card = path.with_suffix(".md")
    card.write_text("\n".join(lines))
    return card


def export_path(run: LoadedRun, fmt: str, out: Path | None, quantize: str | None) -> Path:
    """Where ``export`` writes: ``out``, else ``RUN/export/model[-int8].onnx`` (or ``.pt``)."""
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    return Path(out).absolute() if out else run.directory / "export" / f"model{'-int8' if quantize else ''}{suffix}"


def run_inputs(run: LoadedRun) -> list[Path]:
    """What an export or prediction reads from a run directory: never an output."""
    files = [run.checkpoint, run.directory / "checkpoints", *(run.directory / n for n in ("config.yaml",))]
    return [*files, run.directory / "metrics.json", run.directory / "fingerprint.json"]


def export(
    run: LoadedRun,
    fmt: str,
    out: Path | None = None,
    quantize: str | None = None,
    outputs: Outputs | None = None,
) -> tuple[Path, Path, list[str]]:
    """Export ``run``; returns the file, its model card (``<file>.md``) and notes (parity, quantisation effect).

    Both files go through ``outputs`` (:class:`eastmir.outputs.Outputs`): neither replaces a file eastmir did not
    write unless it allows overwriting, and neither may be one of the run's own files."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise RunError(f"unknown quantisation {quantize!r}; valid: int8")
    outputs = (outputs or Outputs()).with_inputs(run_inputs(run))
    final = export_path(run, fmt, out, quantize)
    if out is None and not final.parent.is_dir():
        outputs.folder(final.parent, "export folder")
    outputs.check(final)
    outputs.check(final.with_suffix(".md"), "model card")
    # everything is made in a temporary folder beside the result and moved into place once complete, so a
    # full disk or an interrupt never leaves a model without its metadata or card
    with tempfile.TemporaryDirectory(prefix=".export-", dir=final.parent) as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance.treespec, LeafSpec.*")  # torch's own, harmless
        path = Path(folder) / final.name
        notes = _export_into(run, fmt, path, quantize)
        card = model_card(run, path, fmt, quantize, notes)
        outputs.write(final, path.read_bytes())
        outputs.write(final.with_suffix(".md"), card.read_bytes(), "model card")  # the card last
    return final, final.with_suffix(".md"), notes


def _export_into(run: LoadedRun, fmt: str, path: Path, quantize: str | None) -> list[str]:
    exporter = export_onnx if fmt == "onnx" else export_torchscript
    exporter(run, path, quantize)
    reference, samples = inference_model(run, fast=False)
    runner = Runner(path)
    tolerance = INT8_TOLERANCE if quantize else 1e-3
    note, spread = parity(run, runner, samples, tolerance)
    notes = [note]
    if spread < VARIES and not quantize:  # the outputs hardly depend on the input: check on weights that make them
        # (an int8 export's own check is its test mAP change below: its ranges are calibrated for real clips)
        varied = with_varied_weights(run)
        with tempfile.TemporaryDirectory(prefix=".parity-", dir=path.parent) as folder:
            copy_path = Path(folder) / path.name
            exporter(varied, copy_path, quantize)
            again, _ = parity(varied, Runner(copy_path), samples, tolerance, least_spread=VARIES)
        notes.append(
            f"the run's outputs vary by only {spread:.2e} across those inputs, too little to see a broken export, "
            f"so the same export was checked again with its weights moved by seeded noise: {again}"
        )
    if quantize:

        def eager(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return reference(torch.from_numpy(x)).numpy()

        before, after = test_split_scores(run, eager), test_split_scores(run, runner)
        if before and after and "mAP" in before:
            notes.append(
                f"int8 test mAP {after['mAP']:.4f} against {before['mAP']:.4f} in float32 "
                f"({after['mAP'] - before['mAP']:+.4f})"
            )
        else:
            notes.append("int8 test mAP not measured: the run's test split is not on this machine")
    return notes
