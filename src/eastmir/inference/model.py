"""The model a run ships and predicts with: waveform ``(batch, samples)`` → probabilities ``(batch, classes)``, the
front end and the windowing inside (:class:`InferenceModel`), and the run's window geometry."""

from __future__ import annotations

import torch
from torch import nn

from eastmir.errors import RunError
from eastmir.folding import optimise_for_inference
from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.inference.calibration import int8_student
from eastmir.inference.run import LoadedRun
from eastmir.inference.windows import HOP_FRACTION, aggregate, cut, cut_scripted


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
    seconds = run.clip_seconds
    samples = round(seconds * frontend.sample_rate)
    if run.input_key.reads_logmel:
        size, per_second = frontend.n_frames(samples), frontend.sample_rate / frontend.hop_length
    else:
        size, per_second = samples, frontend.sample_rate
    return samples, size, max(1, round(float(seconds) * HOP_FRACTION * per_second))


def inference_model(run: LoadedRun, fast: bool = True, int8: bool = False) -> tuple[InferenceModel, int]:
    """The run's waveform → probabilities model and its training clip length in samples; ``int8``: the student
    in static int8 (:func:`int8_student`)."""
    if not run.input_key.from_audio:
        raise RunError(f"{run.directory} is a TeacherLR run: it needs its teacher's embeddings, not audio")
    frontend = run.config.frontend
    samples, size, step = window_of(run)
    student = run.student.eval()
    if int8:
        student = int8_student(run, "--quantize int8")
    elif fast:
        example = (
            LogMelFrontend(frontend)(torch.zeros(1, samples)) if run.input_key.reads_logmel else torch.zeros(1, samples)
        )
        student = optimise_for_inference(student, example, channels_last=False)
    single = run.config.task_kind == "single_label"
    model = InferenceModel(student, frontend if run.input_key.reads_logmel else None, single, size, step).eval()
    model.requires_grad_(False)
    return model, samples


def min_samples(run: LoadedRun) -> int:
    """The shortest waveform the exported model and ``predict`` accept: one analysis window of the front end
    (shorter inputs are refused; longer ones shorter than a clip are padded with silence, as in training)."""
    return run.config.frontend.win_length
