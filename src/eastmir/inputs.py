"""What a student reads: the kind of its input, and what each kind implies.

:class:`InputKind` is a ``StrEnum``: its members are the batch keys the data module serves (``batch["logmel"]``)
and compare and serialise as those strings, so configs, checkpoints and packed shards written before it keep
their meaning. Code asks a kind what it implies (:attr:`~InputKind.reads_logmel`, :meth:`~InputKind.pad_value`,
…) instead of comparing names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class FrameGeometry(Protocol):
    """What a log-mel front end tells about its frames (:class:`eastmir.frontend.FrontendConfig` is one)."""

    silence: float

    def n_frames(self, n_samples: int) -> int: ...

    def n_samples(self, n_frames: int) -> int: ...


class InputKind(StrEnum):
    """The input of a student, and the batch key that holds it."""

    LOGMEL = "logmel"  # the normalised log-mel, (mels, frames): the front end runs before the student
    WAVEFORM = "waveform"  # mono samples at the front end's rate, (samples,)
    EMBEDDING = "embedding"  # a teacher's embedding, (frames, dim): a probe, which cannot hear audio

    @property
    def reads_logmel(self) -> bool:
        """The log-mel front end turns audio into this input (prediction and export include it)."""
        return self is InputKind.LOGMEL

    @property
    def from_audio(self) -> bool:
        """Made from a recording (a log-mel or the waveform itself), so a model of it can predict from audio."""
        return self is not InputKind.EMBEDDING

    def pad_value(self, frontend: FrameGeometry) -> float:
        """What pads a short clip's input: the log-mel of silence, or zero samples."""
        return frontend.silence if self.reads_logmel else 0.0

    def length(self, frontend: FrameGeometry, samples: int) -> int:
        """Input length (frames or samples) of ``samples`` samples."""
        return frontend.n_frames(samples) if self.reads_logmel else samples

    def samples(self, frontend: FrameGeometry, length: int) -> int:
        """The fewest samples that give an input of ``length`` (frames or samples)."""
        return frontend.n_samples(length) if self.reads_logmel else length


__all__ = ["FrameGeometry", "InputKind"]
