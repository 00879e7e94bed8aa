"""The model the phone formats ship: one analysis window in, its probabilities out, the front end inside.

LiteRT and Core ML run fixed-shape programs well and dynamic lengths poorly
(``torch.export`` of the whole-recording model does not lower to either), so
they get the part of ``eastmir predict`` that is the same for every window:

- input ``segment (1, segment_samples)``: the samples one window of log-mel
  frames is computed from, already pre-emphasised and centre-padded as the
  front end pads the whole recording (``segment_samples = (size - 1) · hop +
  n_fft``); for a waveform student, the window's samples;
- input ``valid (1,)`` (float32): how many of the window's ``size`` frames
  (samples) are real; the rest are replaced by the log-mel of silence (0 for
  a waveform), as ``predict`` pads a recording shorter than one window;
- output ``probabilities (1, classes)``.

What the app does around it is :class:`WindowPlan`: pre-emphasis, padding,
where each window starts (``predict``'s windows, :func:`eastmir.inference.windows.starts`)
and the mean of the windows' probabilities. Done so, the app's score for a
recording equals ``predict``'s (the parity check runs exactly this).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.inference.model import inference_model, window_of
from eastmir.inference.run import LoadedRun
from eastmir.inference.windows import starts


@dataclass(frozen=True)
class WindowPlan:
    """How a recording becomes the window model's inputs (the app's side of the model, module docstring).

    ``size`` / ``step``: the window and hop in frames (samples for a waveform student); ``hop`` / ``n_fft``:
    the front end's (1 / 1 for a waveform student); ``preemphasis``, ``reflect``: the front end's pre-emphasis
    and padding (reflect, else zeros)."""

    size: int
    step: int
    hop: int = 1
    n_fft: int = 1
    preemphasis: float = 0.0
    reflect: bool = False

    @classmethod
    def through(cls, size: int, step: int, frontend: FrontendConfig | None) -> WindowPlan:
        """The plan of windows of ``size`` frames every ``step`` through ``frontend`` (``None``: the student
        reads the waveform, ``size`` and ``step`` in samples)."""
        if frontend is None:
            return cls(size, step)
        c = frontend
        return cls(size, step, c.hop_length, c.n_fft, c.preemphasis, c.pad_mode == "reflect")

    @property
    def segment_samples(self) -> int:
        return (self.size - 1) * self.hop + self.n_fft

    def inputs(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A recording ``(samples,)`` → the windows' ``segments (windows, segment_samples)`` and ``valid
        (windows,)``, float32: every window ``predict`` scores, in order."""
        x = np.asarray(waveform, np.float64)
        if self.preemphasis:
            x = x[1:] - self.preemphasis * x[:-1]
        half = self.n_fft // 2
        frames = len(x) // self.hop + 1 if self.n_fft > 1 else len(x)
        padded = np.pad(x, half, mode="reflect" if self.reflect else "constant")
        first = starts(frames, self.size, self.step)
        segments = np.zeros((len(first), self.segment_samples), np.float32)
        for i, start in enumerate(first):
            piece = padded[start * self.hop : start * self.hop + self.segment_samples]
            segments[i, : len(piece)] = piece
        valid = np.array([min(self.size, frames - start) for start in first], np.float32)
        return segments, valid

    def card(self) -> dict:
        return {
            "segment_samples": self.segment_samples,
            "window_frames": self.size,
            "hop_frames": self.step,
            "frame_hop_samples": self.hop,
            "n_fft": self.n_fft,
            "preemphasis": self.preemphasis,
            "padding": "reflect" if self.reflect else "zeros",
        }


class WindowModel(nn.Module):
    """``segment (batch, segment_samples)``, ``valid (batch,)`` → probabilities ``(batch, classes)`` of one
    window each (module docstring)."""

    def __init__(self, student: nn.Module, frontend: LogMelFrontend | None, size: int, single_label: bool) -> None:
        super().__init__()
        self.frontend, self.student, self.size, self.single_label = frontend, student, size, single_label
        self.pad = frontend.config.silence if frontend is not None else 0.0
        self.register_buffer("positions", torch.arange(size, dtype=torch.float32), persistent=False)

    def forward(self, segment: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.frontend.padded_frames(segment) if self.frontend is not None else segment  # (batch, [mels,] size)
        keep = self.positions < valid[:, None]  # (batch, size)
        if x.dim() == 3:
            keep = keep[:, None, :]
        x = torch.where(keep, x, torch.full_like(x, self.pad))
        logits = self.student(x).logits
        return torch.softmax(logits, dim=1) if self.single_label else torch.sigmoid(logits)


def window_model(run: LoadedRun, fast: bool = True) -> tuple[WindowModel, WindowPlan]:
    """The run's window model (BatchNorm folded when ``fast``; the spectrum by matrix products, which the phone
    runtimes run) and its plan."""
    whole, _ = inference_model(run, fast=fast)
    _, size, step = window_of(run)
    frontend = whole.frontend.for_onnx() if whole.frontend is not None else None
    plan = WindowPlan.through(size, step, frontend.config if frontend is not None else None)
    model = WindowModel(whole.student, frontend, size, whole.single_label).eval()
    model.requires_grad_(False)
    return model, plan


def example_inputs(plan: WindowPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the shapes the window model is exported with: ``(1, segment_samples)``, ``(1,)``."""
    return torch.zeros(1, plan.segment_samples), torch.full((1,), float(plan.size))


class WindowedRunner:
    """A window model's runtime (``score(segments (1, L), valid (1,)) -> (1, classes)``) driven as the app drives
    it: ``WindowedRunner(path, score, plan)(waveform (1, samples)) -> probabilities (1, classes)``, the windows'
    mean, as :class:`~eastmir.inference.parity.Runner` runs a whole-recording file."""

    def __init__(self, path: Path, score: Callable[[np.ndarray, np.ndarray], np.ndarray], plan: WindowPlan) -> None:
        self.path, self.score, self.plan = Path(path), score, plan
        self.minimum = None

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        out = []
        for one in np.asarray(waveform, np.float32):
            segments, valid = self.plan.inputs(one)
            scores = [self.score(segments[i : i + 1], valid[i : i + 1])[0] for i in range(len(segments))]
            out.append(np.mean(scores, axis=0))
        return np.stack(out).astype(np.float32)
