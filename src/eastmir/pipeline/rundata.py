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

import math
from collections import Counter

import numpy as np

from eastmir.config import RunConfig
from eastmir.data.clips import ClipRecord, RunData
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.manifest import SPLITS, Manifest, manifest_sha256
from eastmir.data.store import entry_shape, read_entry
from eastmir.errors import ConfigError, ManifestError
from eastmir.frontend import FrontendConfig
from eastmir.pipeline.features import open_store
from eastmir.pipeline.prepare import run_manifest
from eastmir.pipeline.stages import StageResult, run_stages, stages_for


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


def _records(manifest: Manifest, stored: dict[str, StageResult]) -> tuple[dict[str, list[ClipRecord]], dict[str, int]]:
    """The usable clips of every split (an entry in every stored slot) and how many were left out per split."""
    splits: dict[str, list[ClipRecord]] = {}
    dropped: dict[str, int] = {}
    for split in SPLITS:
        clips = manifest.split(split)
        kept = []
        for clip in clips:
            keys = {slot: r.filled.report.keys.get(clip.clip_id) for slot, r in stored.items()}
            if all(keys.values()):
                paths = {f"{slot}_entry": stored[slot].filled.collection.entry(k) for slot, k in keys.items()}
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
    """The clips ``config`` trains on: runs the stages it needs (what is stored is only read), or reads
    ``data.stream``."""
    if config.data.stream:
        return _streamed(config)
    manifest = run_manifest(config)
    lengths = _lengths(config, clip_seconds(config, manifest), bool(config.data.clip_seconds))
    # the lengths are checked first: nothing is computed for a run that cannot train
    settings = ExtractionSettings(on_error=config.data.on_error, progress=progress)
    stored = run_stages(stages_for(config), manifest, open_store(config), settings)
    return _from_store(config, manifest, stored, lengths)


def _from_store(config: RunConfig, manifest: Manifest, stored: dict[str, StageResult], lengths: tuple) -> RunData:
    """The run's data from the stages' collections: the usable clips and what the producers promise."""
    records, dropped = _records(manifest, stored)
    teacher = stored.get("embedding")
    if teacher:
        _warn_without_spread(records["train"], teacher.filled.collection.producer.name)
    for split, n in dropped.items():
        if n:
            print(f"warning: {n} {split} clip(s) left out (unusable; see failures.json in the store)")
    return RunData(
        manifest.dataset,
        manifest.classes,
        config.task or manifest.task or "multilabel",
        *lengths[:3],
        embedding_dim=teacher.filled.collection.producer.shape[1] if teacher else None,
        embedding_frames=_embedding_frames(records),
        clip_seconds=lengths[3],
        records=records,
        left_out=dropped,
        producers={slot: r.filled.collection.producer.key for slot, r in stored.items()},
        manifest=manifest_sha256(config.data.root),
        embedding_parts=teacher.parts if teacher else None,
        embedding_period=teacher.period if teacher else None,
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
