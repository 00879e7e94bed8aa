"""The clips a run uses, and the fixed-length rules that let clips of slightly
different lengths batch together.

- :class:`RunData`: what a run trains on: its clips (or packed shards), the
  fixed lengths they are served at and what the producers promise;
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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eastmir.data.manifest import SPLITS
from eastmir.inputs import InputKind


@dataclass(frozen=True)
class ClipRecord:
    """One usable clip: labels and the store entries of its input and embedding."""

    clip_id: str
    targets: np.ndarray  # (classes,) float32
    mask: np.ndarray  # (classes,) bool
    input_entry: Path | None = None
    embedding_entry: Path | None = None


@dataclass
class RunData:
    """The clips of a run and the fixed lengths they are served at."""

    dataset: str
    classes: list[str]
    task: str
    input_key: InputKind
    input_length: int | None  # frames (log-mel) or samples (waveform); None for TeacherLR
    input_pad: float
    embedding_dim: int | None
    embedding_frames: int | None
    clip_seconds: float
    records: dict[str, list[ClipRecord]] = field(default_factory=dict)  # from the store
    left_out: dict[str, int] = field(default_factory=dict)
    stream: tuple[str, dict] | None = None  # (url, index) of packed shards
    producers: dict[str, str] = field(default_factory=dict)  # input / embedding → producer key
    embedding_parts: list[int] | None = None  # an ensemble's member widths, in order
    embedding_period: float | None = None  # the teacher's frame period in seconds (None: one vector per clip)
    manifest: str | None = None  # sha256 of the dataset's manifest.json (None: streamed, or none)

    def fingerprint(self) -> str:
        """A digest of what the run reads: the clips of each split with their labels and store entries (whose
        names hold the source file's identity and whose folders hold the producer's settings), or the packed
        shards' index. Another dataset, a re-rendered or relabelled clip, or other features change it."""
        digest = hashlib.sha256()
        if self.stream:
            digest.update(json.dumps(self.stream[1], sort_keys=True, default=str).encode())
        for split in sorted(self.records):
            for r in self.records[split]:
                entries = [str(p.relative_to(p.parent.parent)) if p else "" for p in (r.input_entry, r.embedding_entry)]
                digest.update(f"{split}\0{r.clip_id}\0{entries}\0".encode())
                digest.update(np.asarray(r.targets, np.float32).tobytes() + np.asarray(r.mask, bool).tobytes())
        digest.update(json.dumps([self.dataset, self.classes, self.producers], default=str).encode())
        return digest.hexdigest()

    def counts(self) -> dict[str, int]:
        if self.stream:
            return {s: self.stream[1]["splits"][s]["clips"] for s in SPLITS}
        return {s: len(r) for s, r in self.records.items()}


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
