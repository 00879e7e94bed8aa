"""The data flow as plain functions, one per command::

    prepare ─▶ manifest ─▶ features ─▶ store (student inputs) ─┐
                  │                                           ├─▶ fit ─▶ run directory
                  └──────▶ extract ──▶ store (embeddings) ─────┘

- :func:`prepare` (``eastmir data prepare``) writes a dataset's manifest
  once; everything later reads it from ``data.root`` and never rewrites it.
- :func:`features` (``eastmir features``) and :func:`extract` (``eastmir
  extract``) fill the one store (:mod:`eastmir.data.store`) with what is
  missing, keyed by settings and source-file identity; they are safe to
  interrupt and run again. ``fit`` runs both itself.
- :func:`fit` (``eastmir fit``) trains and tests one run with Lightning.

Only :func:`fit` imports Lightning (``eastmir features`` does not).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from eastmir.audio import FrontendConfig
from eastmir.data.features import build_logmels, build_waveforms
from eastmir.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from eastmir.data.store import Collection, FillReport, Producer, SourceItem, Store, entry_shape, fill
from eastmir.errors import ConfigError, ManifestError, TrainingError
from eastmir.registry import DATASETS, TEACHERS
from eastmir.schema import check_dataset_options, input_key_for, validate_config
from eastmir.teachers.base import TeacherSource

# ---------------------------------------------------------------------------- prepare


def prepare(dataset: str, root: str | Path, options: dict | None = None, progress: bool = True) -> Manifest:
    """Write ``root/manifest.json`` for ``dataset`` (``synth``: render it first); options are checked first."""
    options = check_dataset_options(dataset, dict(options or {}))
    return DATASETS.get(dataset)(Path(root), progress=progress, **options)


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
) -> tuple[Collection, FillReport]:
    """Store the teacher's embedding of every clip that has none (a network teacher runs, ``precomputed`` imports)."""
    collection = store.collection(embedding_producer(teacher))
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
    config: dict, manifest: Manifest, store: Store, progress: bool = True
) -> tuple[Collection | None, FillReport | None]:
    """Store the input the run's student reads (``logmel`` or ``waveform``); nothing for TeacherLR."""
    key = input_key_for(config)
    on_error = config["data"]["on_error"]
    frontend = FrontendConfig(**config["frontend"])
    if key == "logmel":
        return build_logmels(manifest, store, frontend, on_error, progress)
    if key == "waveform":
        return build_waveforms(manifest, store, frontend.sample_rate, on_error, progress)
    return None, None


# ---------------------------------------------------------------------------- fit


def _records(
    manifest: Manifest, inputs: tuple[Collection | None, FillReport | None], embeddings: tuple | None
) -> tuple[dict[str, list], dict[str, int]]:
    """The usable clips of every split (entries present) and how many were left out per split."""
    from eastmir.training.datamodule import ClipRecord

    splits: dict[str, list] = {}
    dropped: dict[str, int] = {}
    for split in ("train", "valid", "test"):
        kept = []
        clips = manifest.split(split)
        for clip in clips:
            paths: dict[str, Path | None] = {"input_entry": None, "embedding_entry": None}
            usable = True
            for slot, pair in (("input_entry", inputs), ("embedding_entry", embeddings)):
                collection, report = pair if pair else (None, None)
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


def _embedding_frames(records: dict[str, list]) -> int | None:
    """The most common number of embedding frames: every clip's embedding is cropped or padded to it."""
    shapes = Counter(entry_shape(r.embedding_entry)[0] for rs in records.values() for r in rs if r.embedding_entry)
    return shapes.most_common(1)[0][0] if shapes else None


def _check_prerequisites(config: dict) -> dict | None:
    """The KD head of ``teacher_run``, read before any other work (a missing run fails at once)."""
    kd = (config["distillation"] or {}).get("kd")
    if not kd:
        return None
    from eastmir.training.checkpoints import read_teacher_head

    return read_teacher_head(kd["teacher_run"])


def fit(
    config: dict,
    progress: bool = True,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train and test one run; returns its run directory ``{workdir}/runs/<name>``.

    It holds the resolved ``config.yaml``, ``checkpoints/`` (the best by the
    validation metric, named with it, and ``last.ckpt``), CSV ``logs/`` and
    ``metrics.json``. An interrupted run resumes from its last checkpoint to
    the result it would have had; a finished one is not retrained unless
    ``overwrite``. ``callbacks`` are extra Lightning callbacks.
    """
    import lightning as L

    from eastmir.training.checkpoints import check_resumable, read_checkpoint, resume_checkpoint
    from eastmir.training.datamodule import ClipDataModule
    from eastmir.training.system import EastSystem
    from eastmir.training.trainer import build_trainer, training_done, trim_log

    config = validate_config(config, config.get("name", "config") if isinstance(config, dict) else "config")
    run_dir = Path(config["workdir"]) / "runs" / config["name"]
    if (run_dir / "metrics.json").exists() and not overwrite:
        print(f"{run_dir}: already finished (metrics.json); pass --overwrite to retrain")
        return run_dir
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    resume = resume_checkpoint(run_dir)
    if resume is not None:
        check_resumable(resume)
    teacher_head = _check_prerequisites(config)
    started = time.time()
    if config["threads"]:
        torch.set_num_threads(config["threads"])

    manifest = open_dataset(config)
    store = open_store(config)
    embeddings = None
    if config["teacher"]:
        teacher = build_teacher(config["teacher"])
        embeddings = extract(teacher, manifest, store, on_error=config["data"]["on_error"], progress=progress)
        del teacher
    inputs = features(config, manifest, store, progress)
    records, dropped = _records(manifest, inputs, embeddings)
    for split, n in dropped.items():
        if n:
            print(f"warning: {n} {split} clip(s) left out (unusable; see failures.json in the store)")

    L.seed_everything(config["seed"], workers=True, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dim = embeddings[0].producer.shape[1] if embeddings else None
    system = EastSystem(config, num_classes=len(manifest.classes), embedding_dim=dim, classes=manifest.classes)
    if teacher_head is not None:
        system.set_teacher_head(teacher_head, str(config["distillation"]["kd"]["teacher_run"]))
    frontend = FrontendConfig(**config["frontend"])
    samples = round(clip_seconds(config, manifest) * frontend.sample_rate)
    key = system.input_key
    length = {"logmel": frontend.n_frames(samples), "waveform": samples}.get(key)
    dm = ClipDataModule(
        records,
        key,
        input_length=length,
        input_pad=frontend.silence if key == "logmel" else 0.0,
        embedding_frames=_embedding_frames(records),
        batch_size=config["data"]["batch_size"],
        num_workers=config["data"]["num_workers"],
    )
    trainer, best = build_trainer(config, run_dir, system.monitor, progress, resume is not None, callbacks)
    if resume is not None:
        trim_log(run_dir, int(read_checkpoint(resume).get("epoch", -1)))
    if resume is None or not training_done(resume, config["trainer"]["max_epochs"]):
        trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
    best_path = best.best_model_path or _best_from_disk(run_dir)
    if not best_path:
        raise TrainingError(f"{run_dir}: training saved no checkpoint; did a validation epoch run?")
    test = trainer.test(system, datamodule=dm, ckpt_path=best_path, verbose=False)[0]
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    metric = system.monitor
    metrics = {
        "name": config["name"],
        "system": config["system"] or config["name"],
        "student": config["student"]["name"],
        "teacher": teacher_label(config),
        "dataset": manifest.dataset,
        "classes": manifest.classes,
        "test": {k.removeprefix("test_"): float(v) for k, v in test.items()},
        f"best_{metric}": _best_score(read_checkpoint(best_path)),
        "best_checkpoint": str(Path(best_path).relative_to(run_dir)),
        "epochs": int(last["epoch"]) + 1,
        "steps": int(last["global_step"]),
        "n_clips": {s: len(d) for s, d in dm.datasets.items()},
        "left_out": dropped,
        "backbone_parameters": system.student.backbone_parameters(),
        "wall_seconds": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        tmp = run_dir / ".metrics.json.part"
        tmp.write_text(json.dumps(metrics, indent=1))
        tmp.replace(run_dir / "metrics.json")
    return run_dir


def _best_from_disk(run_dir: Path) -> str | None:
    from eastmir.training.checkpoints import CHECKPOINT_EPOCH

    def epoch(path: Path) -> int:
        match = CHECKPOINT_EPOCH.search(path.name)
        return int(match.group(1)) if match else -1

    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=epoch)
    return str(best[-1]) if best else None


def _best_score(state: dict) -> float | None:
    for key, value in state.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_score") is not None:
            return float(value["best_model_score"])
    return None


def teacher_label(config: dict) -> str | None:
    """How tables name the run's teacher: its ``id`` (precomputed files) or its name."""
    teacher = config.get("teacher") or {}
    return teacher.get("id") or teacher.get("name")
