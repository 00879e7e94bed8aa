"""The one schema every dataset adapter produces.

A manifest is a JSON file::

    {"dataset": "synth", "classes": [...], "task": "multilabel", "clips": [
        {"clip_id": "...", "audio_path": "audio/x.wav", "split": "train",
         "labels": [0.0, 1.0, ...], "mask": [true, false, ...],
         "duration": 4.0, "source": {...}}]}

``labels`` are floats (mixup and soft labels fit), ``mask`` says which labels
are known. ``task`` (optional) is ``multilabel`` or ``single_label``: a run
whose config leaves ``task`` unset takes it from here. ``audio_path`` is
relative to the manifest's folder (or absolute). Nothing downstream knows
which dataset it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eastmir.errors import ManifestError
from eastmir.fetch import atomic_write, sha256_of

__all__ = ["MANIFEST_NAME", "SPLITS", "Clip", "Manifest", "ManifestError", "load_manifest", "manifest_sha256"]

SPLITS = ("train", "valid", "test")
TASKS = ("multilabel", "single_label")
MANIFEST_NAME = "manifest.json"


@dataclass
class Clip:
    clip_id: str
    audio_path: str
    split: str
    labels: np.ndarray  # (classes,) float32
    mask: np.ndarray  # (classes,) bool
    duration: float | None = None
    source: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] | None = None  # {"sha256", "stat"} of the audio file (eastmir.data.sources)

    def to_json(self) -> dict[str, Any]:
        out = {
            "clip_id": self.clip_id,
            "audio_path": self.audio_path,
            "split": self.split,
            "labels": [round(float(x), 6) for x in self.labels],
            "mask": [bool(x) for x in self.mask],
            "duration": self.duration,
            "source": self.source,
        }
        if self.content is not None:
            out["content"] = self.content
        return out


@dataclass
class Manifest:
    dataset: str
    classes: list[str]
    clips: list[Clip]
    root: Path  # folder the audio paths are relative to
    task: str | None = None  # multilabel | single_label; None: not said

    def audio_file(self, clip: Clip) -> Path:
        p = Path(clip.audio_path)
        return p if p.is_absolute() else self.root / p

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def labels(self, clips: list[Clip] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(labels (N, classes) float32, mask (N, classes) bool)``."""
        clips = self.clips if clips is None else clips
        return (
            np.stack([c.labels for c in clips]).astype(np.float32),
            np.stack([c.mask for c in clips]).astype(bool),
        )

    def save(self, path: str | Path | None = None) -> Path:
        """Write the manifest (atomically) to ``path``, by default ``root/manifest.json``; returns the path."""
        path = Path(path) if path else self.root / MANIFEST_NAME
        blob = {"dataset": self.dataset, "classes": self.classes, "task": self.task}
        blob["clips"] = [c.to_json() for c in self.clips]
        atomic_write(path, json.dumps(blob, indent=1))
        return path


def written(manifest: Manifest) -> Manifest:
    """``manifest``, saved to its ``root/manifest.json``: how a dataset's ``prepare`` ends."""
    manifest.save()
    return manifest


def manifest_sha256(root: str | Path) -> str | None:
    """sha256 of the manifest in the dataset folder ``root`` (``None`` where there is none): a finished run
    records it, so it knows when its dataset changed."""
    path = Path(root) / MANIFEST_NAME
    return sha256_of(path) if path.is_file() else None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest; errors name the file and the offending clip."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest here; run `eastmir data prepare NAME --root DIR` first")
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from err
    for key in ("dataset", "classes", "clips"):
        if key not in blob:
            raise ManifestError(f"{path}: missing top-level key {key!r}")
    classes = list(blob["classes"])
    task = blob.get("task")
    if task is not None and task not in TASKS:
        raise ManifestError(f"{path}: task {task!r} is not one of {TASKS}")
    clips, seen = [], set()
    for i, row in enumerate(blob["clips"]):
        where = f"{path}: clip #{i} ({row.get('clip_id', '?')})"
        for key in ("clip_id", "audio_path", "split", "labels", "mask"):
            if key not in row:
                raise ManifestError(f"{where}: missing field {key!r}")
        if row["clip_id"] in seen:
            raise ManifestError(f"{where}: duplicate clip_id")
        seen.add(row["clip_id"])
        if row["split"] not in SPLITS:
            raise ManifestError(f"{where}: split {row['split']!r} is not one of {SPLITS}")
        labels = np.asarray(row["labels"], dtype=np.float32)
        mask = np.asarray(row["mask"], dtype=bool)
        if labels.shape != (len(classes),) or mask.shape != (len(classes),):
            raise ManifestError(
                f"{where}: labels/mask have {labels.shape}/{mask.shape} entries, expected {len(classes)} classes"
            )
        clips.append(
            Clip(
                row["clip_id"],
                row["audio_path"],
                row["split"],
                labels,
                mask,
                row.get("duration"),
                row.get("source", {}),
                row.get("content"),
            )
        )
    return Manifest(blob["dataset"], classes, clips, path.parent, task)
