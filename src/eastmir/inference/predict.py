"""Predicting with a trained student: ``eastmir predict`` and ``eastmir.load_student``.

A recording is decoded at the run's sample rate (any format, rate and
channel count the data layer reads), turned into the student's input as in
training (the log-mel of the whole recording), and cut into **windows of the
training clip length** with a hop of half a window by default (``hop``); the
last window ends with the recording, and a recording shorter than one window
is padded with silence, exactly as training pads a short clip. The student
scores every window; the file's probability per class is the ``mean``
(default) or ``max`` over windows, and the per-window curve is kept.

Decisions: a multi-label run predicts every class whose probability reaches
its threshold, chosen on the validation split at fit time (F1-optimal per
class, ``thresholds`` in ``metrics.json``); a single-label run predicts its
arg-max. The student runs in eval mode with BatchNorm folded into the
convolutions and channels-last weights (:mod:`eastmir.folding`):
the same outputs up to float rounding, 4× faster for Mobile FCN on this CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from eastmir.audio import AudioDecodeError, AudioQualityWarning
from eastmir.errors import RunError
from eastmir.folding import optimise_for_inference
from eastmir.frontend import LogMelFrontend
from eastmir.inference.calibration import CALIBRATION_CLIPS, int8_student
from eastmir.inference.devices import choose_device, full_float32
from eastmir.inference.files import DecodedFiles, Failure, _as_is
from eastmir.inference.model import min_samples
from eastmir.inference.run import LoadedRun, load_run
from eastmir.inference.windows import AGGREGATIONS, HOP_FRACTION, cut, starts


@dataclass
class Prediction:
    """One recording's scores: ``probabilities (classes,)``, per window ``windows (n, classes)``."""

    source: str
    classes: list[str]
    probabilities: np.ndarray
    windows: np.ndarray
    window_starts: np.ndarray  # seconds
    thresholds: np.ndarray | None  # None: single-label (arg-max)

    @property
    def predicted(self) -> list[str]:
        if self.thresholds is None:
            return [self.classes[int(np.argmax(self.probabilities))]]
        return [c for c, p, t in zip(self.classes, self.probabilities, self.thresholds) if p >= t]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities)[:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]

    def as_dict(self, curve: bool = False) -> dict:
        out = {
            "file": self.source,
            "predicted": self.predicted,
            "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, self.probabilities)},
            "windows": len(self.windows),
        }
        if curve:
            out["curve"] = [
                {"start": round(float(s), 3), "probabilities": [round(float(p), 6) for p in w]}
                for s, w in zip(self.window_starts, self.windows)
            ]
        return out


@dataclass
class TrainedStudent:
    """A trained student ready to predict; build it with :func:`load_student`. ``precision``: ``float32``;
    ``bf16`` (the student under bfloat16 autocast: on a CPU with bf16 instructions, :func:`bf16_capability`,
    1.5–2× faster; probabilities within about 1e-2 of float32); or ``int8`` (its convolution blocks in static
    int8, :mod:`eastmir.inference.int8`, calibrated on 32 of the run's training clips, which must be on this
    machine: 3–4× faster than float32 on a CPU with VNNI; probabilities within
    :data:`~eastmir.inference.calibration.INT8_TOLERANCE` of float32 on the tests' runs)."""

    run: LoadedRun
    fast: bool = True
    precision: str = "float32"
    device: str | torch.device = "cpu"
    model: torch.nn.Module = field(init=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise RunError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self.device = choose_device(self.device)
        if self.precision == "int8" and self.device.type != "cpu":
            raise RunError("--precision int8 runs on the CPU only (PyTorch's int8 kernels); use --device cpu")
        if not self.run.input_key.from_audio:
            raise RunError(
                f"{self.run.directory} is a TeacherLR run: it reads teacher embeddings, so it cannot predict from "
                "audio alone; predict with a student run"
            )
        config = self.run.config
        self.frontend_config = config.frontend
        self.sample_rate = self.frontend_config.sample_rate
        self.frontend = LogMelFrontend(self.frontend_config) if self.run.input_key.reads_logmel else None
        self.clip_seconds = self.run.clip_seconds
        self.window = self._length(round(self.clip_seconds * self.sample_rate))
        self.minimum = min_samples(self.run)  # the exported model's too
        self.pad = self.frontend_config.silence if self.frontend is not None else 0.0
        student = self.run.student.eval()
        if self.precision == "int8":
            self.model = int8_student(self.run, "--precision int8")
        elif self.fast:
            shape = (1, self.frontend_config.n_mels, self.window) if self.frontend else (1, self.window)
            self.model = optimise_for_inference(student, torch.zeros(shape))
        else:
            self.model = student
        self.model = self.model.to(self.device)
        if self.frontend is not None:
            self.frontend = self.frontend.to(self.device)
        self.single_label = config.task_kind == "single_label"
        thresholds = (self.run.metrics or {}).get("thresholds")
        self.thresholds = (
            None if self.single_label else np.array([(thresholds or {}).get(c, 0.5) for c in self.classes])
        )
        self.threshold_note = None  # why the validation thresholds are not the ones used, if they are not
        if not self.single_label and not thresholds:
            why = (
                "no metrics.json (an unfinished run or a bare checkpoint)"
                if self.run.metrics is None
                else ("no validation thresholds in its metrics.json")
            )
            self.threshold_note = (
                f"{self.run.directory}: {why}: every class is predicted at probability ≥ 0.5, not at the "
                "F1-optimal validation thresholds a finished run uses"
            )

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    def _length(self, samples: int) -> int:
        """Input length (frames for a log-mel, samples for a waveform) of ``samples`` samples."""
        return self.frontend_config.n_frames(samples) if self.frontend is not None else samples

    def _per_second(self) -> float:
        return self.sample_rate / self.frontend_config.hop_length if self.frontend is not None else self.sample_rate

    def windows(self, waveform: np.ndarray, hop: float | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """The inputs of every window ``(n, mels, frames)`` (or ``(n, samples)``) and their starts in seconds
        (:mod:`eastmir.inference.windows`, the windowing the exported model holds too)."""
        if len(waveform) < self.minimum:
            raise AudioDecodeError(
                f"too short: {len(waveform)} samples ({len(waveform) / self.sample_rate:.3f} s) at "
                f"{self.sample_rate} Hz, below the model's minimum of {self.minimum} (one analysis window)"
            )
        x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None].to(self.device)
        if self.frontend is not None:
            with torch.no_grad():
                x = self.frontend(x)
        step = max(1, round((hop if hop else self.clip_seconds * HOP_FRACTION) * self._per_second()))
        cut_windows, weights = cut(x, self.window, step, self.pad)
        kept = cut_windows[0][weights > 0]
        return kept, np.array(starts(x.shape[-1], self.window, step)) / self._per_second()

    @torch.no_grad()
    def scores(self, inputs: torch.Tensor) -> np.ndarray:
        """Probabilities ``(n, classes)`` of a batch of inputs (on the student's device). In float32 on a GPU
        the convolutions and products run in true float32 (no TF32), so they match the CPU's to about 1e-5."""
        inputs = inputs.to(self.device)
        with full_float32(self.device):
            if self.precision == "bf16":
                with torch.autocast(self.device.type, torch.bfloat16):
                    logits = self.model(inputs).logits.float()
            else:
                logits = self.model(inputs).logits
            probabilities = torch.softmax(logits, 1) if self.single_label else torch.sigmoid(logits)
        return probabilities.cpu().numpy()

    def predict(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        hop: float | None = None,
        aggregate: str = "mean",
        source: str = "",
    ) -> Prediction:
        """Scores of one mono ``waveform (samples,)`` at ``sample_rate`` (resampled to the run's rate)."""
        from eastmir.audio import resample

        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        audio = resample(np.asarray(waveform, np.float32), sample_rate, self.sample_rate)
        inputs, starts = self.windows(audio, hop)
        return self._prediction(source, self.scores(inputs), starts, aggregate)

    def stream(self, hop: float | None = None, aggregate: str = "mean"):
        """A :class:`~eastmir.inference.live.StreamingPredictor` for one recording fed in blocks (mono, at
        :attr:`sample_rate`): each window's scores as it completes, and :meth:`predict`'s result at the end."""
        from eastmir.inference.live import StreamingPredictor

        return StreamingPredictor(self, hop, aggregate)

    def _prediction(self, source: str, windows: np.ndarray, starts: np.ndarray, aggregate: str) -> Prediction:
        total = windows.mean(0) if aggregate == "mean" else windows.max(0)
        return Prediction(source, self.classes, total, windows, starts, self.thresholds)

    def predict_files(
        self,
        files: Iterable[str | Path],
        hop: float | None = None,
        aggregate: str = "mean",
        batch_size: int = 32,
        progress: bool = True,
        workers: int = 0,
    ) -> Iterator[Prediction | Failure]:
        """Predictions of many files, in their order; an unreadable file gives a :class:`Failure` and the rest
        go on.

        Files are decoded and resampled in ``workers`` processes (0: in this one) while the student scores the
        ones before; windows of several files share a batch of up to ``batch_size``. The results do not depend
        on ``workers`` or ``batch_size`` (each window is scored on its own; a test compares them).
        """
        from tqdm.auto import tqdm

        files = [str(f) for f in files]
        pending: list[tuple[str, torch.Tensor, np.ndarray]] = []

        def flush() -> Iterator[Prediction]:
            if not pending:
                return
            scores = self.scores(torch.cat([inputs for _, inputs, _ in pending]))
            at = 0
            for source, inputs, starts in pending:
                yield self._prediction(source, scores[at : at + len(inputs)], starts, aggregate)
                at += len(inputs)
            pending.clear()

        decoded = DataLoader(
            DecodedFiles(files, self.sample_rate, self.frontend_config if self.frontend else None),
            batch_size=None,
            num_workers=workers,
            collate_fn=_as_is,
            prefetch_factor=4 if workers else None,
        )
        for path, audio, problem, notes in tqdm(
            decoded, desc="predict", total=len(files), unit="file", disable=not progress
        ):
            with warnings.catch_warnings():  # every call names its files' problems (not once per process)
                warnings.simplefilter("always", AudioQualityWarning)
                for note in notes:
                    warnings.warn(note, AudioQualityWarning, stacklevel=2)
            try:
                if problem is not None:
                    raise AudioDecodeError(problem)
                inputs, starts = self.windows(audio, hop)
            except AudioDecodeError as err:
                yield from flush()
                yield Failure(path, str(err))
                continue
            if pending and sum(len(i) for _, i, _ in pending) + len(inputs) > batch_size:
                yield from flush()
            pending.append((path, inputs, starts))
        yield from flush()


def load_student(
    path: str | Path, fast: bool = True, precision: str = "float32", device: str | torch.device = "cpu"
) -> TrainedStudent:
    """A trained run (directory or checkpoint) ready to predict: ``load_student(run).predict(waveform, rate)``;
    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``."""
    return TrainedStudent(load_run(path), fast, precision, device)


PRECISIONS = ("float32", "bf16", "int8")


def bf16_capability() -> str | None:
    """The instructions that make bfloat16 fast on this CPU (``AMX``, ``AVX512-BF16``), or ``None``."""
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


def choose_precision(asked: str = "float32", device: torch.device | None = None) -> tuple[str, str]:
    """The precision to predict in and a line that says why: ``float32`` unless asked (the same probabilities
    on every machine); ``auto`` → ``bf16`` where the device computes it natively (a CPU with bf16 instructions,
    a GPU with bf16 support), else ``float32``. ``device``: where the student runs (default the CPU)."""
    device = device or torch.device("cpu")
    where = "" if device.type == "cpu" else f" on {device}"
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        capability = "bf16 support" if native else None
    else:
        capability = bf16_capability()
    if asked == "auto":
        asked = "bf16" if capability else "float32"
        on = "this GPU" if device.type == "cuda" else "this CPU"
        why = f"{on} has {capability}" if capability else f"{on} has no bf16 instructions"
        return asked, f"predicting in {asked}{where} ({why}; --precision float32, bf16 or int8 to choose)"
    if asked == "bf16" and not capability:
        return asked, f"predicting in bf16{where}, which this device emulates without bf16 instructions: slower"
    if asked == "int8":
        from eastmir.inference.int8 import int8_engine

        return asked, (
            f"predicting in int8 (static, {int8_engine()} backend, calibrated on {CALIBRATION_CLIPS} of the run's "
            "training clips)"
        )
    if asked == "float32":
        return asked, f"predicting in float32{where} (--precision bf16 or int8 for speed)"
    return asked, f"predicting in {asked}{where}"
