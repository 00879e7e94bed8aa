"""What a run trains on (``fit``'s data): the usable clips of each split, from the store or streamed
from packed shards.

:func:`run_data` fills the store with whatever is missing (teacher
embeddings, student inputs), keeps the clips whose entries exist, and fixes
the lengths every clip is cropped or padded to. With ``data.stream`` it
reads a packed folder or bucket instead (:func:`eastmir.pipeline.pack.pack`
writes one) and needs neither the audio nor the store. Lightning is not
imported here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eastmir.audio import FrontendConfig
from eastmir.config import RunConfig
from eastmir.data.clips import ClipRecord
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.manifest import SPLITS, Manifest
from eastmir.data.store import Collection, FillReport, entry_shape, read_entry
from eastmir.data.subsets import with_train_fraction
from eastmir.errors import ConfigError, ManifestError
from eastmir.inputs import InputKind
from eastmir.pipeline.extract import build_teacher, extract_with
from eastmir.pipeline.features import features, open_store
from eastmir.pipeline.prepare import open_dataset


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


def clip_seconds(config: RunConfig, manifest: Manifest) -> float:
    """The run's clip length: ``data.clip_seconds``, else the most common duration in the manifest."""
    if config.data.clip_seconds:
        return float(config.data.clip_seconds)
    durations = Counter(c.duration for c in manifest.clips if c.duration)
    if not durations:
        raise ConfigError("set data.clip_seconds: the manifest gives no clip durations")
    return float(durations.most_common(1)[0][0])


def _lengths(config: RunConfig, seconds: float, chosen: bool = True) -> tuple[str, int | None, float, float]:
    """The input key, its fixed length, pad value and the clip length in seconds.

    A length the student cannot take is refused when the user ``chosen`` it
    (``data.clip_seconds``); the default (the most common duration) is raised
    to the student's shortest input instead, the clips padded with silence.
    """
    frontend, key, name = config.frontend, config.input_key, config.student.name
    student = config.student.capabilities
    needed = student.min_frames if student.input_key == key else 1

    def length_of(s: float) -> int | None:
        samples = round(s * frontend.sample_rate)
        return key.length(frontend, samples) if key.from_audio else None

    length = length_of(seconds)
    if length is not None and length < needed:
        if chosen:
            raise ConfigError(
                f"data.clip_seconds: {seconds:g} s gives {length} input frames, but {name} "
                f"needs at least {needed}; set data.clip_seconds higher"
            )
        shortest = key.samples(frontend, needed)
        raised = math.ceil(shortest / frontend.sample_rate * 1000) / 1000
        print(
            f"note: the clips' most common duration, {seconds:g} s, is shorter than {name} "
            f"takes; clips are padded with silence to {raised:g} s (set data.clip_seconds to choose)"
        )
        seconds, length = raised, length_of(raised)
    return key, length, key.pad_value(frontend), seconds


def _records(
    manifest: Manifest, inputs: tuple[Collection | None, FillReport | None], embeddings: tuple | None
) -> tuple[dict[str, list[ClipRecord]], dict[str, int]]:
    """The usable clips of every split (entries present) and how many were left out per split."""
    splits: dict[str, list[ClipRecord]] = {}
    dropped: dict[str, int] = {}
    for split in SPLITS:
        kept = []
        clips = manifest.split(split)
        for clip in clips:
            paths: dict[str, Path | None] = {"input_entry": None, "embedding_entry": None}
            usable = True
            for slot, (collection, report) in (
                ("input_entry", inputs),
                ("embedding_entry", embeddings or (None, None)),
            ):
                if collection is None:
                    continue
                key = report.keys.get(clip.clip_id)
                usable = usable and key is not None
                paths[slot] = collection.entry(key) if key else None
            if usable:
                kept.append(ClipRecord(clip.clip_id, clip.labels, clip.mask, **paths))
        if not kept:
            raise ManifestError(f"split {split!r} has no usable clip ({len(clips)} listed)")
        splits[split], dropped[split] = kept, len(clips) - len(kept)
    return splits, dropped


def _warn_without_spread(train: list[ClipRecord], teacher: str, sample: int = 64) -> None:
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


def _embedding_frames(records: dict[str, list[ClipRecord]]) -> int | None:
    """The most common number of embedding frames: every clip's embedding is cropped or padded to it."""
    shapes = Counter(entry_shape(r.embedding_entry)[0] for rs in records.values() for r in rs if r.embedding_entry)
    return shapes.most_common(1)[0][0] if shapes else None


def run_data(config: RunConfig, progress: bool = True) -> RunData:
    """The clips ``config`` trains on; fills the store with what is missing, or reads ``data.stream``."""
    data = config.data
    if data.stream:
        return _streamed(config)
    manifest = with_train_fraction(open_dataset(config), data.train_fraction, data.subset_seed)
    key, length, pad, seconds = _lengths(config, clip_seconds(config, manifest), bool(data.clip_seconds))
    store = open_store(config)  # the lengths are checked first: nothing is computed for a run that cannot train
    embeddings, producers, parts, period = None, {}, None, None
    if config.teacher:
        teacher = build_teacher(config.teacher)
        settings = ExtractionSettings(on_error=data.on_error, progress=progress)
        embeddings = extract_with(teacher, manifest, store, settings)
        producers["embedding"] = embeddings[0].producer.key
        parts, period = getattr(teacher, "parts", None), teacher.frame_seconds
        del teacher
    inputs = features(config, manifest, store, progress)
    if inputs[0] is not None:
        producers["input"] = inputs[0].producer.key
    records, dropped = _records(manifest, inputs, embeddings)
    if embeddings:
        _warn_without_spread(records["train"], embeddings[0].producer.name)
    for split, n in dropped.items():
        if n:
            print(f"warning: {n} {split} clip(s) left out (unusable; see failures.json in the store)")
    return RunData(
        manifest.dataset,
        manifest.classes,
        config.task or manifest.task or "multilabel",
        key,
        length,
        pad,
        embeddings[0].producer.shape[1] if embeddings else None,
        _embedding_frames(records),
        seconds,
        records,
        dropped,
        producers=producers,
        embedding_parts=parts,
        embedding_period=period,
    )


def _streamed(config: RunConfig) -> RunData:
    from eastmir.data.streaming import read_index

    url = config.data.stream
    if config.data.train_fraction < 1:
        raise ConfigError("data.train_fraction subsamples the store's clips: unset data.stream (or pack a subset)")
    index = read_index(url)
    key = config.input_key
    if index["input_key"] != key:
        raise ConfigError(f"{url} was packed for a student reading {index['input_key']!r}; this run reads {key!r}")
    if FrontendConfig(**index["frontend"]) != config.frontend and key.from_audio:
        raise ConfigError(f"{url} was packed with another front end ({index['frontend']}); pack again for this run")
    if bool(index.get("embedding_dim")) != bool(config.teacher):
        raise ConfigError(f"{url} was packed {'with' if index.get('embedding_dim') else 'without'} teacher embeddings")
    if "embedding_period" not in index and config.feature and config.feature.align == "periods":
        raise ConfigError(
            f"{url} was packed before teachers' frame periods were recorded, which distillation.feature.align: "
            "periods needs; pack it again with `eastmir pack`, or set distillation.feature.align: ceil"
        )
    seconds = float(config.data.clip_seconds or index["clip_seconds"])
    key, length, pad, seconds = _lengths(config, seconds)
    return RunData(
        index["dataset"],
        index["classes"],
        config.task or index["task"],
        key,
        length,
        pad,
        index.get("embedding_dim"),
        index.get("embedding_frames"),
        seconds,
        stream=(url, index),
        producers=index.get("producers", {}),
        embedding_parts=index.get("embedding_parts"),
        embedding_period=index.get("embedding_period"),
    )
