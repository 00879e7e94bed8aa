"""The steps before training, one per command: ``prepare`` (``eastmir data
prepare``), ``features`` (``eastmir features``), ``extract`` (``eastmir
extract``), with the helpers that open a prepared dataset and the store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from eastmir.audio import FrontendConfig
from eastmir.data.features import build_logmels, build_waveforms
from eastmir.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from eastmir.data.sources import record_contents
from eastmir.data.store import Collection, FillReport, Producer, SourceItem, Store, combined_key, fill, finish_fill
from eastmir.errors import ConfigError, ManifestError
from eastmir.registry import DATASETS, TEACHERS
from eastmir.schema import check_dataset_options, input_key_for
from eastmir.teachers.base import Teacher, TeacherSource
from eastmir.teachers.ensemble import EnsembleTeacher

# ---------------------------------------------------------------------------- prepare


def prepare(
    dataset: str, root: str | Path, options: dict | None = None, progress: bool = True, download: bool = False
) -> Manifest:
    """Write ``root/manifest.json`` for ``dataset`` (``synth``: render it first); options are checked first.

    ``download``: fetch, verify and extract the official archives into ``root`` first
    (:mod:`eastmir.data.download`; resumable). Each clip's audio file is recorded with its content's sha256
    (:mod:`eastmir.data.sources`), which keys its store entries.
    """
    prepare_fn = DATASETS.get(dataset)
    options = check_dataset_options(dataset, dict(options or {}))
    if download:
        from eastmir.data.download import download_dataset

        download_dataset(dataset, root, progress)
    manifest = prepare_fn(Path(root), progress=progress, **options)
    present = [c for c in manifest.clips if manifest.audio_file(c).is_file()]
    for clip, content in zip(present, record_contents([manifest.audio_file(c) for c in present])):
        clip.content = content
    manifest.save()
    return manifest


def load_dataset(root: str | Path) -> Manifest:
    """The dataset prepared at ``root`` (its ``manifest.json``)."""
    return load_manifest(root)


def store_at(root: str | Path) -> Store:
    """The store whose root is ``root``."""
    return Store(Path(root))


def teacher_catalogue(weights_dir: str | Path | None = None) -> list[dict[str, str]]:
    """Every registered teacher: dimension, frame period, sample rate, weights source, licence and whether its
    weights are on this machine (``eastmir teachers``)."""
    rows = []
    described = {"precomputed": "per clip or yours", "ensemble": "its finest member's"}
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
                "frame period": described.get(name) or (f"{period:.3f} s" if period else "one per clip"),
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


def open_dataset(config: dict) -> Manifest:
    """The prepared dataset at ``data.root``; it is read, never prepared or rewritten here."""
    data = config["data"]
    root = Path(data["root"])
    if not (root / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"{root}: no prepared dataset here (no {MANIFEST_NAME}); run `eastmir data prepare "
            f"{data['dataset']} --root {root}` first, or point data.root at a prepared dataset"
        )
    manifest = load_manifest(root)
    if manifest.dataset != data["dataset"]:
        raise ConfigError(
            f"data.root {root} holds a {manifest.dataset!r} dataset but data.dataset is {data['dataset']!r}"
        )
    return manifest


def clip_seconds(config: dict, manifest: Manifest) -> float:
    """The run's clip length: ``data.clip_seconds``, else the most common duration in the manifest."""
    if config["data"]["clip_seconds"]:
        return float(config["data"]["clip_seconds"])
    durations = Counter(c.duration for c in manifest.clips if c.duration)
    if not durations:
        raise ConfigError("set data.clip_seconds: the manifest gives no clip durations")
    return float(durations.most_common(1)[0][0])


# ---------------------------------------------------------------------------- the store


def open_store(config: dict) -> Store:
    return Store(config["cache_dir"])


def embedding_producer(teacher: TeacherSource) -> Producer:
    return Producer("embedding", teacher.label, teacher.identity(), (None, teacher.dim))


def build_teacher(section: dict, weights_dir: str | Path | None = None) -> TeacherSource:
    """The teacher (or teacher source) of a config's ``teacher:`` section."""
    options = {k: v for k, v in section.items() if k != "name"}
    if weights_dir is not None:
        options["weights_dir"] = weights_dir
    return TEACHERS.build(section["name"], **options)


def extract(
    teacher: TeacherSource,
    manifest: Manifest,
    store: Store,
    batch_size: int = 8,
    on_error: str = "raise",
    progress: bool = True,
    workers: int = 0,
    devices: int | str = 1,
    strategy: str = "auto",
    accelerator: str = "cpu",
    num_nodes: int = 1,
) -> tuple[Collection, FillReport]:
    """Store the teacher's embedding of every clip that has none.

    A network teacher runs as a batched prediction job (audio decoded in
    ``workers`` loader processes, batches of ``batch_size`` clips, spread
    over ``devices`` / ``num_nodes`` with ``strategy``:
    :mod:`eastmir.training.extraction`); ``precomputed`` imports its files.
    An ensemble extracts each member (stored on their own, as if run alone),
    then stores every clip's combined entry (:func:`extract_ensemble`).
    """
    if isinstance(teacher, EnsembleTeacher):
        settings = (batch_size, on_error, progress, workers, devices, strategy, accelerator, num_nodes)
        members = [extract(m, manifest, store, *settings) for m in teacher.members]
        return extract_ensemble(teacher, members, store, on_error)
    collection = store.collection(embedding_producer(teacher))
    if isinstance(teacher, Teacher):
        from eastmir.training.extraction import extract_batched

        with collection.building():
            report = extract_batched(
                teacher,
                teacher_items(teacher, manifest),
                store,
                collection,
                batch_size,
                on_error,
                progress,
                workers,
                devices,
                strategy,
                accelerator,
                num_nodes,
            )
        return collection, report
    items = teacher_items(teacher, manifest)
    report = fill(
        collection,
        items,
        teacher.read_source,
        teacher.embed_arrays,
        batch_size,
        on_error,
        progress,
        f"extract {teacher.label}",
    )
    return collection, report


def extract_ensemble(
    teacher: EnsembleTeacher, members: list[tuple[Collection, FillReport]], store: Store, on_error: str = "raise"
) -> tuple[Collection, FillReport]:
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
    return collection, report


def features(
    config: dict, manifest: Manifest, store: Store, progress: bool = True, verify: bool = False
) -> tuple[Collection | None, FillReport | None]:
    """Store the input the run's student reads (``logmel`` or ``waveform``); nothing for TeacherLR.

    Built in ``data.num_workers`` processes (0: in this one); ``verify`` re-reads
    every stored entry and rebuilds a corrupted one.
    """
    key = input_key_for(config)
    on_error, workers = config["data"]["on_error"], config["data"]["num_workers"]
    frontend = FrontendConfig(**config["frontend"])
    if key == "logmel":
        return build_logmels(manifest, store, frontend, on_error, progress, workers, verify)
    if key == "waveform":
        return build_waveforms(manifest, store, frontend.sample_rate, on_error, progress, workers, verify)
    return None, None
