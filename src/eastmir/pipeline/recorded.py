"""Embeddings found by the request that made them, so training on a complete store never loads its teacher.

A store entry is keyed by the teacher's identity, which includes the sha256
of its weights: to compute that key the weights must be read, and for a
teacher whose weights come from a download, fetched. A run that only trains
needs none of that when every clip's embedding is stored (extraction done
on another machine, a compute node without network). So each embedding
collection records the requests it answers: the config's ``teacher:``
section (name and options, without ``weights_dir``, which only says where
the file was looked for) in ``requests.json`` beside ``producer.json``, with
the frame period and member widths a run needs.

:func:`recorded_embeddings` answers a run's request from that record: the
collection that recorded it and holds an entry for every clip of the
manifest. Its ``producer.json`` names the teacher as it was at extraction
(name, settings, weights' sha256), which the run's fingerprint takes in. When
none or more than one collection qualifies (say the weights changed between
two extractions), it answers nothing and the teacher is built as before: its
weights then decide.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eastmir.config import TeacherSection
from eastmir.data.fill import Filled, FillReport, SourceItem, plan_fill
from eastmir.data.manifest import Manifest
from eastmir.data.store import Collection, Producer, Store, combined_key
from eastmir.fetch import atomic_write
from eastmir.filelock import hold
from eastmir.pipeline.extract import embedding_producer
from eastmir.registry import TEACHERS
from eastmir.rundir import comparable_teacher
from eastmir.teachers.base import Teacher, TeacherSource

REQUESTS = "requests.json"


@dataclass(frozen=True)
class Recorded:
    """A complete collection found by its record: what the run needs of its producer."""

    filled: Filled
    parts: list[int] | None
    period: float | None


def teacher_request(section: TeacherSection | dict) -> dict[str, Any]:
    """The section as the record keeps it (:func:`eastmir.rundir.comparable_teacher`): name and options, members
    alike, without the options that say where the weights are."""
    plain = dict(section) if isinstance(section, dict) else {"name": section.name, **section.options}
    if plain.get("members"):
        plain["members"] = [teacher_request(member) for member in plain["members"]]
    return comparable_teacher(plain)


def record_requests(store: Store, collection: Collection, section: TeacherSection, teacher: TeacherSource) -> None:
    """:func:`record_request` for a teacher's collection, and for an ensemble's members' collections too (so a
    later run finds the members' entries, from which the ensemble's are keyed, without building them)."""
    record_request(collection, section, teacher)
    if section.is_ensemble:
        for member_section, member in zip(section.members, teacher.members, strict=True):
            member_collection = store.collection(embedding_producer(member))
            record_requests(store, member_collection, member_section, member)


def record_request(collection: Collection, section: TeacherSection | dict, teacher: TeacherSource) -> None:
    """Add ``section``'s request to ``collection``'s record (a read-only store keeps its record as it is)."""
    path = collection.folder / REQUESTS
    request = teacher_request(section)
    with contextlib.suppress(OSError), hold(collection.folder / ".requests", waiting=lambda holder: None):
        record = _read(path)
        if request in record["requests"]:
            return
        record["requests"].append(request)
        record.update(period=teacher.frame_seconds, parts=getattr(teacher, "parts", None))
        atomic_write(path, json.dumps(record, indent=1, sort_keys=True))


def recorded_embeddings(section: TeacherSection, manifest: Manifest, store: Store) -> Recorded | None:
    """The one complete collection that recorded ``section``'s request, or ``None`` (see the module docstring).
    Only network teachers (which read each clip's audio) and ensembles of them are answered."""
    if section.is_ensemble:
        return _recorded_ensemble(section, manifest, store)
    if not issubclass(TEACHERS.get(section.name), Teacher):
        return None
    items = [SourceItem(c.clip_id, manifest.audio_file(c), c.content) for c in manifest.clips]
    found = []
    for collection, record in _recording(store, teacher_request(section)):
        report, todo = plan_fill(collection, items)
        if not todo and not report.failed:
            found.append(Recorded(Filled(collection, report), record.get("parts"), record.get("period")))
    return found[0] if len(found) == 1 else None


def _recorded_ensemble(section: TeacherSection, manifest: Manifest, store: Store) -> Recorded | None:
    members = [recorded_embeddings(member, manifest, store) for member in section.members]
    if any(member is None for member in members):
        return None
    found = []
    for collection, record in _recording(store, teacher_request(section)):
        report = FillReport()
        for clip in manifest.clips:
            key = combined_key([m.filled.report.keys[clip.clip_id] for m in members])  # type: ignore[union-attr]
            if not collection.has(key):
                break
            report.keys[clip.clip_id] = key
            report.cached += 1
        else:
            found.append(Recorded(Filled(collection, report), record.get("parts"), record.get("period")))
    return found[0] if len(found) == 1 else None


def _recording(store: Store, request: dict[str, Any]) -> list[tuple[Collection, dict[str, Any]]]:
    """Every embedding collection of ``store`` whose record holds ``request``."""
    root = store.root / "embedding"
    matches = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        record = _read(folder / REQUESTS)
        if request not in record["requests"] or not (folder / "producer.json").is_file():
            continue
        described = json.loads((folder / "producer.json").read_text())
        producer = Producer(described["kind"], described["name"], described["settings"], tuple(described["shape"]))
        if folder.name != f"{producer.name}-{producer.key}":  # a record that does not reproduce its own key
            continue
        matches.append((Collection(folder, producer), record))
    return matches


def _read(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"requests": []}
    return record if isinstance(record, dict) and isinstance(record.get("requests"), list) else {"requests": []}
