"""Scores of audio as it arrives: blocks of any size in, each window's scores out as soon as the window is
complete, and at the end the recording's scores, equal to ``predict`` on the whole recording.

A plugin or a phone gets its input a block at a time (a few hundred samples
per audio callback). :class:`StreamingPredictor` keeps only what the next
window needs and cuts the input exactly as ``predict`` does
(:mod:`eastmir.inference.windows`):

- :class:`LogMelStream` computes the front end's frames of the whole
  recording piece by piece: a frame as soon as the samples under it have
  arrived (the first frames' reflect padding needs the first ``n_fft / 2 +
  1`` samples), the last frames, whose padding depends on where the
  recording ends, when it ends. Pre-emphasis carries its one sample over
  from block to block.
- :class:`WindowStream` cuts those frames (or the samples, for a student
  that reads the waveform) into windows of the training clip length every
  hop; at the end come the closing window that ends with the recording
  (unless a regular one already does) or, for a recording shorter than one
  window, the one window padded with silence.

Blocks are mono samples at the run's sample rate (``TrainedStudent.sample_rate``;
resample before feeding). What is held between blocks is bounded: one
window of frames and less than one FFT of samples, whatever the length of
the recording (:attr:`StreamingPredictor.held_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from eastmir.audio import AudioDecodeError
from eastmir.frontend import LogMelFrontend
from eastmir.inference.windows import AGGREGATIONS, HOP_FRACTION


@dataclass(frozen=True)
class WindowScores:
    """One completed window: where it starts in the recording (seconds) and its ``probabilities (classes,)``."""

    start: float
    probabilities: np.ndarray


class LogMelStream:
    """Samples ``(samples,)`` in blocks → the front end's normalised log-mel frames ``(mels, frames)`` of the
    whole recording, in order, each as soon as it can be computed (module docstring)."""

    def __init__(self, frontend: LogMelFrontend) -> None:
        self.frontend = frontend
        c = frontend.config
        self.hop, self.n_fft, self.half = c.hop_length, c.n_fft, c.n_fft // 2
        self.preemphasis, self.reflect = c.preemphasis, c.pad_mode == "reflect"
        self.last: torch.Tensor | None = None  # the previous block's last sample (pre-emphasis)
        self.emphasised = 0  # pre-emphasised samples so far
        self.padded: torch.Tensor | None = None  # the padded signal from sample `start` on (once left-padded)
        self.start = 0  # index in the padded signal of padded[0]
        self.waiting = torch.zeros(0)  # pre-emphasised samples before the left padding could be built
        self.frames = 0  # frames computed so far

    def push(self, block: torch.Tensor) -> torch.Tensor:
        """The frames ``(mels, n)`` that ``block (samples,)`` completes (``n`` may be 0)."""
        samples = self._emphasised(block)
        if self.padded is None:
            self.waiting = torch.cat([self.waiting.to(samples), samples])
            if len(self.waiting) <= self.half:  # the reflect padding reads samples 1 … n_fft / 2
                return self._none(samples)
            samples, self.waiting = self.waiting, torch.zeros(0)
            self.padded = torch.cat([self._left(samples), samples])
        else:
            self.padded = torch.cat([self.padded, samples])
        return self._frames_up_to(self.start + len(self.padded))

    def finish(self) -> torch.Tensor:
        """The remaining frames ``(mels, n)``, those whose padding depends on where the recording ends."""
        if self.padded is None:  # shorter than the left padding needs: the whole recording is here
            if self.reflect and len(self.waiting) <= self.half:
                raise AudioDecodeError(
                    f"too short: {self.emphasised} samples, below the {self.half + 1} the front end's reflect "
                    "padding needs"
                )
            self.padded = torch.cat([self._left(self.waiting), self.waiting])
        tail = self.padded[-(self.half + 1) : -1].flip(0) if self.reflect else self.padded.new_zeros(self.half)
        self.padded = torch.cat([self.padded, tail])
        total = self.emphasised // self.hop + 1  # frames of the whole recording (FrontendConfig.n_frames)
        return self._frames_up_to(self.start + len(self.padded), total)

    @property
    def held(self) -> int:
        """Samples held between blocks."""
        return (0 if self.padded is None else len(self.padded)) + len(self.waiting)

    def _emphasised(self, block: torch.Tensor) -> torch.Tensor:
        if not self.preemphasis:
            self.emphasised += len(block)
            return block
        joined = block if self.last is None else torch.cat([self.last, block])
        if len(joined):
            self.last = joined[-1:]
        out = joined[1:] - self.preemphasis * joined[:-1]
        self.emphasised += len(out)
        return out

    def _left(self, samples: torch.Tensor) -> torch.Tensor:
        """The padding before the first sample (torch.stft's: ``samples[half] … samples[1]``, or zeros)."""
        return samples[1 : self.half + 1].flip(0) if self.reflect else samples.new_zeros(self.half)

    def _frames_up_to(self, end: int, total: int | None = None) -> torch.Tensor:
        """Frames from the next one on whose samples end by ``end`` (index in the padded signal), at most up to
        frame ``total``; keeps what later frames (and the closing reflection) need."""
        assert self.padded is not None
        last = (end - self.n_fft) // self.hop  # the last frame whose samples are all here
        if total is not None:
            last = min(last, total - 1)
        if last < self.frames:
            return self._none(self.padded)
        begin = self.frames * self.hop - self.start
        piece = self.padded[begin : (last * self.hop + self.n_fft) - self.start]
        frames = self.frontend.padded_frames(piece[None])[0]  # (mels, last - frames + 1)
        self.frames = last + 1
        keep = min(self.frames * self.hop, end - (self.half + 1))  # the reflection at the end reads half + 1
        self.padded, self.start = self.padded[keep - self.start :], keep
        return frames

    def _none(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(self.frontend.config.n_mels, 0)


class SampleStream:
    """For a student that reads the waveform: the samples themselves are the input ``(samples,)``."""

    held = 0

    def push(self, block: torch.Tensor) -> torch.Tensor:
        return block

    def finish(self) -> torch.Tensor:
        return torch.zeros(0)


class WindowStream:
    """Input ``(..., time)`` in pieces → windows ``(..., size)`` every ``step``, as
    :func:`eastmir.inference.windows.cut` cuts the whole input (only the windows it keeps, weight 1)."""

    def __init__(self, size: int, step: int, pad: float) -> None:
        self.size, self.step, self.pad = size, step, pad
        self.held_input: torch.Tensor | None = None  # the input from index `start` on
        self.start = 0
        self.time = 0  # input received so far
        self.next = 0  # the next regular window starts at next * step

    def push(self, piece: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """``(start, window)`` of every regular window ``piece`` completes."""
        if piece.shape[-1] == 0:
            return []
        self.held_input = piece if self.held_input is None else torch.cat([self.held_input, piece], -1)
        self.time += piece.shape[-1]
        out = []
        while self.next * self.step + self.size <= self.time:
            at = self.next * self.step
            out.append((at, self.held_input[..., at - self.start : at - self.start + self.size]))
            self.next += 1
        keep = max(0, min(self.next * self.step, self.time - self.size))  # the closing window's, at the end
        self.held_input, self.start = self.held_input[..., keep - self.start :], keep
        return out

    def finish(self) -> list[tuple[int, torch.Tensor]]:
        """The closing window: the last ``size`` of the input unless a regular window already ends there, or
        the whole input padded to ``size`` when it is shorter."""
        if self.held_input is None:
            return []
        if self.time < self.size:
            return [(0, F.pad(self.held_input, (0, self.size - self.time), value=self.pad))]
        if (self.time - self.size) % self.step == 0:
            return []
        at = self.time - self.size
        return [(at, self.held_input[..., at - self.start :])]

    @property
    def held(self) -> int:
        return 0 if self.held_input is None else self.held_input.numel()


class StreamingPredictor:
    """A trained student fed audio in blocks: :meth:`feed` returns the scores of the windows each block
    completes, :meth:`finish` the last windows' and the recording's :class:`Prediction`, the same as
    ``student.predict`` on the whole recording (to float rounding, ~1e-6). ``hop`` (seconds) and
    ``aggregate`` as ``predict``'s. One recording per predictor; ``student.stream()`` makes one (``student``: an
    :class:`~eastmir.inference.predict.TrainedStudent`, which imports this module, not the other way round)."""

    def __init__(self, student: Any, hop: float | None = None, aggregate: str = "mean") -> None:
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        self.student, self.aggregate = student, aggregate
        per_second = student._per_second()
        self.per_second = per_second
        step = max(1, round((hop if hop else student.clip_seconds * HOP_FRACTION) * per_second))
        if student.frontend is not None:
            self.input: LogMelStream | SampleStream = LogMelStream(student.frontend)
        else:
            self.input = SampleStream()
        self.windows = WindowStream(student.window, step, student.pad)
        self.scored: list[WindowScores] = []
        self.samples = 0
        self.finished = False

    def feed(self, block: np.ndarray) -> list[WindowScores]:
        """Scores of the windows ``block (samples,)`` (mono, at the run's rate) completes, in order."""
        if self.finished:
            raise RuntimeError("this stream is finished: make another with student.stream()")
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32).reshape(-1)).to(self.student.device)
        self.samples += len(x)
        with torch.no_grad():
            return self._score(self.windows.push(self.input.push(x)))

    def finish(self, source: str = "") -> Any:
        """The last windows' scores are scored and the recording's prediction returned (its ``windows`` and
        ``window_starts`` are every window's, as ``predict`` gives them)."""
        if self.finished:
            raise RuntimeError("this stream is finished: make another with student.stream()")
        if self.samples < self.student.minimum:
            rate = self.student.sample_rate
            raise AudioDecodeError(
                f"too short: {self.samples} samples ({self.samples / rate:.3f} s) at {rate} Hz, below the model's "
                f"minimum of {self.student.minimum} (one analysis window)"
            )
        with torch.no_grad():
            last = self.windows.push(self.input.finish())
            self._score(last + self.windows.finish())
        self.finished = True
        windows = np.stack([w.probabilities for w in self.scored])
        starts = np.array([w.start for w in self.scored])
        return self.student._prediction(source, windows, starts, self.aggregate)

    @property
    def held_bytes(self) -> int:
        """Bytes of input held between blocks (samples and frames, float32): bounded by one window of frames
        and about one FFT of samples, whatever the recording's length."""
        return 4 * (self.input.held + self.windows.held)

    def _score(self, windows: list[tuple[int, torch.Tensor]]) -> list[WindowScores]:
        if not windows:
            return []
        scores = self.student.scores(torch.stack([w for _, w in windows]))
        out = [WindowScores(at / self.per_second, p) for (at, _), p in zip(windows, scores)]
        self.scored += out
        return out


__all__ = ["LogMelStream", "SampleStream", "StreamingPredictor", "WindowScores", "WindowStream"]
