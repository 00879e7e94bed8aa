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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eastmir.data.fill import Filled
from eastmir.data.manifest import SPLITS, Manifest
from eastmir.data.store import entry_shape, read_entry
from eastmir.errors import ManifestError
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
    n_clips: dict[str, int] = field(default_factory=dict)  # split → clips it serves

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


def usable_records(manifest: Manifest, stored: dict[str, Filled]) -> tuple[dict[str, list[ClipRecord]], dict[str, int]]:
    """The usable clips of every split (an entry in every ``stored`` collection: ``input``, ``embedding``) and
    how many were left out per split."""
    splits: dict[str, list[ClipRecord]] = {}
    dropped: dict[str, int] = {}
    for split in SPLITS:
        clips = manifest.split(split)
        kept = []
        for clip in clips:
            keys = {slot: f.report.keys.get(clip.clip_id) for slot, f in stored.items()}
            if all(keys.values()):
                paths = {f"{slot}_entry": stored[slot].collection.entry(k) for slot, k in keys.items()}
                kept.append(ClipRecord(clip.clip_id, clip.labels, clip.mask, **paths))
        if not kept:
            raise ManifestError(f"split {split!r} has no usable clip ({len(clips)} listed)")
        splits[split], dropped[split] = kept, len(clips) - len(kept)
    return splits, dropped


def warn_without_spread(train: list[ClipRecord], teacher: str, sample: int = 64) -> None:
    """Say so when the teacher's embeddings do not vary over the training clips (a sample of them): every
    regulariser is then constant, and training would silently be the baseline."""
    rows = [r for r in train[:: max(1, len(train) // sample)] if r.embedding_entry][:sample]
    if len(rows) < 2:
        return
    means = np.stack([read_entry(r.embedding_entry).mean(axis=0) for r in rows])  # (clips, dim)
    spread = float(means.std(axis=0).max())
    if spread <= 1e-6 * max(1.0, float(np.abs(means).max())):
        print(
            f"eastmir: warning: the {teacher} embeddings do not vary over {len(rows)} training clips (largest "
            f"standard deviation {spread:.1e}): the regulariser has nothing to teach; check the teacher's weights "
            "or embedding files"
        )


def embedding_frames(records: dict[str, list[ClipRecord]]) -> int | None:
    """The most common number of embedding frames: every clip's embedding is cropped or padded to it."""
    shapes = Counter(entry_shape(r.embedding_entry)[0] for rs in records.values() for r in rs if r.embedding_entry)
    return shapes.most_common(1)[0][0] if shapes else None


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
