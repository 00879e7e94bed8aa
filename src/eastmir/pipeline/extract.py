"""``eastmir extract``: a teacher's embeddings of every clip, in the store; and the teachers on offer.

A network teacher runs as a batched Lightning prediction job
(:mod:`eastmir.training.extraction`); ``precomputed`` imports the user's
files; an ensemble extracts each member as if run alone, then stores each
clip's combined entry. How the job runs (batch, loader workers, devices) is
one :class:`~eastmir.data.jobs.ExtractionSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eastmir.config import TeacherSection
from eastmir.data.fill import Filled, FillReport, SourceItem, fill, finish_fill, plan_fill
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.manifest import Manifest
from eastmir.data.store import Producer, Store, combined_key
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher, TeacherSource


def teacher_catalogue(weights_dir: str | Path | None = None) -> list[dict[str, str]]:
    """Every registered teacher: dimension, frame period, sample rate, weights source, licence and whether its
    weights are on this machine (``eastmir teachers``)."""
    rows = []
    for name in TEACHERS.names():
        cls = TEACHERS.get(name)
        period = getattr(cls, "frame_seconds", None)
        specs = cls.weights_specs
        here = (
            "—"
            if not specs
            else "yes"
            if all(s.available(weights_dir) for s in specs)
            else "no (downloaded on first use)"
        )
        rows.append(
            {
                "teacher": name,
                "dimension": cls.dims,
                "frame period": cls.period_words or (f"{period:.3f} s" if period else "one per clip"),
                "sample rate": f"{cls.sample_rate} Hz" if getattr(cls, "sample_rate", None) else "—",
                "weights": cls.source,
                "licence": cls.licence,
                "here now": here if specs else "—",
            }
        )
    return rows


def teacher_items(teacher: TeacherSource, manifest: Manifest) -> list[SourceItem]:
    """What a teacher's entries are made from: each clip's source file (the audio, with the manifest's record
    of its content, or the teacher's own file such as a user's embedding file)."""
    items = []
    for clip in manifest.clips:
        audio = manifest.audio_file(clip)
        source = teacher.source_file(audio, clip.clip_id)
        items.append(SourceItem(clip.clip_id, source, clip.content if source == audio else None))
    return items


def embedding_producer(teacher: TeacherSource) -> Producer:
    return Producer("embedding", teacher.label, teacher.identity(), (None, teacher.dim))


def build_teacher(section: TeacherSection | dict, weights_dir: str | Path | None = None) -> TeacherSource:
    """The teacher (or teacher source) of a config's ``teacher:`` section (checked; plain when it comes
    from the command line's :func:`~eastmir.config.teacher_section`)."""
    if isinstance(section, dict):
        section = TeacherSection.model_validate(section)
    options = section.options
    if weights_dir is not None:
        options["weights_dir"] = weights_dir
    return TEACHERS.build(section.name, **options)


def extract(teacher: TeacherSource, manifest: Manifest, store: Store, batch_size: int = 8, **settings: Any) -> Filled:
    """Store the teacher's embedding of every clip that has none; ``settings`` are those of
    :class:`~eastmir.data.jobs.ExtractionSettings` (``batch_size``, ``on_error``, ``progress``,
    ``workers``, ``devices``, ``strategy``, ``accelerator``, ``num_nodes``)."""
    return extract_with(teacher, manifest, store, ExtractionSettings(batch_size=batch_size, **settings))


def extract_with(teacher: TeacherSource, manifest: Manifest, store: Store, settings: ExtractionSettings) -> Filled:
    """:func:`extract` with its settings as one value.

    A network teacher runs as a batched prediction job (audio decoded in
    loader processes, spread over devices: :mod:`eastmir.training.extraction`);
    ``precomputed`` imports its files. An ensemble extracts each member (stored
    on their own, as if run alone), then stores every clip's combined entry
    (:func:`extract_ensemble`).
    """
    if teacher.is_ensemble:
        members = [extract_with(m, manifest, store, settings) for m in teacher.members]
        return extract_ensemble(teacher, members, store, settings.on_error)
    collection = store.collection(embedding_producer(teacher))
    items = teacher_items(teacher, manifest)
    if isinstance(teacher, Teacher):
        from eastmir.training.extraction import extract_batched

        report, todo = plan_fill(collection, items)
        if not todo:  # every clip is stored: read only, no lock (a read-only store; runs started together)
            finish_fill(collection, report, settings.on_error)
            return Filled(collection, report)
        with collection.building():
            report = extract_batched(teacher, items, collection, settings)
        return Filled(collection, report)
    report = fill(
        collection,
        items,
        teacher.read_source,
        teacher.embed_arrays,
        settings.batch_size,
        settings.on_error,
        settings.progress,
        f"extract {teacher.label}",
    )
    return Filled(collection, report)


def extract_ensemble(teacher: Any, members: list[Filled], store: Store, on_error: str = "raise") -> Filled:
    """Store each clip's ensemble entry, made from its members' entries.

    An entry is keyed by its members' entry keys, so it is rebuilt whenever
    any member's source changes. A clip that some member lacks is left out
    (with that member's reason).
    """
    collection = store.collection(embedding_producer(teacher))
    report = FillReport()
    clips = dict.fromkeys(c for _, r in members for c in (*r.keys, *r.failed))
    for clip in clips:
        missing = [(m, r) for m, (_, r) in zip(teacher.members, members) if clip not in r.keys]
        if missing:
            member, member_report = missing[0]
            report.failed[clip] = f"{member.label}: {member_report.failed.get(clip, 'no entry')}"
            continue
        keys = [r.keys[clip] for _, r in members]
        key = combined_key(keys)
        report.keys[clip] = key
        if collection.has(key):
            report.cached += 1
            continue
        entry = teacher.combine_entries([c.read(k) for (c, _), k in zip(members, keys)])
        collection.write(key, entry, f"clip {clip} ({teacher.label} ensemble entry)")
        report.built += 1
    finish_fill(collection, report, on_error)
    return Filled(collection, report)


__all__ = [
    "ExtractionSettings",
    "build_teacher",
    "embedding_producer",
    "extract",
    "extract_ensemble",
    "extract_with",
    "teacher_catalogue",
    "teacher_items",
]
