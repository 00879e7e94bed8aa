"""The clips a run uses, and the fixed-length rules that let clips of slightly
different lengths batch together.

- :class:`ClipRecord`: a usable clip, its labels and the store entries of its
  input and teacher embedding;
- :func:`fit_time_axis`: the input is cropped to its first ``length`` values
  along time, or padded at the end (with the log-mel of silence, or 0 for a
  waveform);
- :func:`fit_frames`: the embedding is cropped to its first ``frames``
  frames, or padded at the end by repeating its last frame (a repeated frame
  keeps the distance structure that distance correlation compares; zeros
  would add a fake "silent" teacher frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClipRecord:
    """One usable clip: labels and the store entries of its input and embedding."""

    clip_id: str
    targets: np.ndarray  # (classes,) float32
    mask: np.ndarray  # (classes,) bool
    input_entry: Path | None = None
    embedding_entry: Path | None = None


def fit_time_axis(x: np.ndarray, length: int, pad_value: float) -> np.ndarray:
    """Crop or pad the last axis of ``x`` to ``length`` (pad at the end with ``pad_value``)."""
    have = x.shape[-1]
    if have >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - have)], constant_values=pad_value)


def fit_frames(embedding: np.ndarray, frames: int) -> np.ndarray:
    """Crop ``(T, dim)`` to ``frames`` frames, or pad it by repeating its last frame."""
    have = embedding.shape[0]
    if have >= frames:
        return embedding[:frames]
    return np.concatenate([embedding, np.repeat(embedding[-1:], frames - have, axis=0)])
