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

from eastmir.config import RunConfig
from eastmir.data.clips import RunData, embedding_frames, usable_records, warn_without_spread
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.manifest import SPLITS, Manifest, manifest_sha256
from eastmir.errors import ConfigError
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
    records, dropped = usable_records(manifest, {slot: r.filled for slot, r in stored.items()})
    frames = embedding_frames(records)
    teacher = stored.get("embedding")
    if teacher:
        warn_without_spread(records["train"], teacher.filled.collection.producer.name)
    for split, n in dropped.items():
        if n:
            print(f"warning: {n} {split} clip(s) left out (unusable; see failures.json in the store)")
    return RunData(
        manifest.dataset,
        manifest.classes,
        config.task or manifest.task or "multilabel",
        *lengths[:3],
        embedding_dim=teacher.filled.collection.producer.shape[1] if teacher else None,
        embedding_frames=frames,
        clip_seconds=lengths[3],
        records=records,
        left_out=dropped,
        producers={slot: r.filled.collection.producer.key for slot, r in stored.items()},
        manifest=manifest_sha256(config.data.root),
        n_clips={split: len(clips) for split, clips in records.items()},
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
        n_clips={s: index["splits"][s]["clips"] for s in SPLITS},
        producers=index.get("producers", {}),
        embedding_parts=index.get("embedding_parts"),
        embedding_period=index.get("embedding_period"),
    )
