"""The steps before training, one per command: ``prepare`` (``eastmir data
prepare``), ``features`` (``eastmir features``), ``extract`` (``eastmir
extract``), with the helpers that open a prepared dataset and the store."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from eastmir.audio import FrontendConfig
from eastmir.data.features import build_logmels, build_waveforms
from eastmir.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from eastmir.data.store import Collection, FillReport, Producer, SourceItem, Store, fill
from eastmir.errors import ConfigError, ManifestError
from eastmir.registry import DATASETS, TEACHERS
from eastmir.schema import check_dataset_options, input_key_for
from eastmir.teachers.base import Teacher, TeacherSource

# ---------------------------------------------------------------------------- prepare


def prepare(
    dataset: str, root: str | Path, options: dict | None = None, progress: bool = True, download: bool = False
) -> Manifest:
    """Write ``root/manifest.json`` for ``dataset`` (``synth``: render it first); options are checked first.

    ``download``: fetch, verify and extract the official archives into ``root`` first
    (:mod:`eastmir.data.download`; resumable).
    """
    prepare_fn = DATASETS.get(dataset)
    options = check_dataset_options(dataset, dict(options or {}))
    if download:
        from eastmir.data.download import download_dataset

        download_dataset(dataset, root, progress)
    return prepare_fn(Path(root), progress=progress, **options)


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
    :mod:`eastmir.pipeline.extraction`); ``precomputed`` imports its files.
    """
    collection = store.collection(embedding_producer(teacher))
    if isinstance(teacher, Teacher):
        from eastmir.pipeline.extraction import extract_batched

        report = extract_batched(
            teacher,
            manifest,
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
    items = [SourceItem(c.clip_id, teacher.source_file(manifest.audio_file(c), c.clip_id)) for c in manifest.clips]
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
