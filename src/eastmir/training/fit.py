"""``eastmir fit``: prepare (cached) → log-mels (cached) → teacher embeddings
(cached) → train with Lightning → test the best checkpoint → run directory.

The run directory ``{workdir}/runs/<name>`` holds ``config.yaml`` (resolved),
``checkpoints/`` (best by validation mAP, named with it, and ``last.ckpt``),
``logs/`` (CSV) and ``metrics.json``. An interrupted run resumes from
``last.ckpt``; a finished one is not retrained unless ``overwrite``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from eastmir.audio import FrontendConfig
from eastmir.config import ConfigError
from eastmir.data.datamodule import ClipDataModule
from eastmir.data.features import compute_logmels, compute_waveforms
from eastmir.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from eastmir.registry import DATASETS, STUDENTS, TEACHERS
from eastmir.teachers.base import EmbeddingStore, embedding_dir
from eastmir.teachers.extract import extract_embeddings
from eastmir.training.system import EastSystem


def cache_root(config: dict) -> Path:
    return Path(config.get("cache_dir", f"{config['workdir']}/cache"))


def prepare_dataset(config: dict, progress: bool = True) -> Manifest:
    """The dataset's manifest, preparing it first if ``data.root`` has none."""
    data = config["data"]
    root = Path(data["root"])
    prepare = DATASETS.get(data["dataset"])
    if (root / MANIFEST_NAME).exists() and not data.get("options"):
        return load_manifest(root)
    return prepare(root, progress=progress, **(data.get("options") or {}))


def teacher_store(config: dict, manifest: Manifest, progress: bool = True) -> EmbeddingStore | None:
    """Cached embeddings of ``config["teacher"]`` for every clip, extracting what is missing."""
    tcfg = config.get("teacher")
    if not tcfg:
        return None
    tcfg = dict(tcfg)
    name = tcfg.pop("name")
    cls = TEACHERS.get(name)
    if getattr(cls, "precomputed", False):
        return cls.open_store(manifest, **tcfg)
    folder = embedding_dir(cache_root(config), manifest.dataset, f"{cls.name}-{cls.version}")
    if folder.is_dir() and all((folder / f"{c.clip_id}.npy").exists() for c in manifest.clips):
        return EmbeddingStore(folder)
    batch_size = tcfg.pop("batch_size", 8)
    teacher = cls(cache_dir=str(cache_root(config)), **tcfg)
    return extract_embeddings(
        teacher,
        manifest,
        cache_root(config),
        batch_size=batch_size,
        on_error=config["data"].get("on_error", "raise"),
        progress=progress,
    )


def student_inputs(config: dict, manifest: Manifest, key: str, progress: bool = True) -> tuple[Path | None, int | None]:
    """Cache the input ``key`` the system reads; returns ``(cache folder, length along the last axis)``.

    ``logmel``: cached log-mels (``length`` in frames); ``waveform``: decoded
    audio at the front end's rate (``length`` in samples), for waveform
    students and for a per-batch (jittered) log-mel; ``embedding`` (the
    TeacherLR probe): nothing beyond the teacher embeddings.
    """
    if key == "embedding":
        return None, None
    frontend = FrontendConfig(**config.get("frontend", {}))
    on_error = config["data"].get("on_error", "raise")
    seconds = config["data"].get("clip_seconds") or manifest.clips[0].duration
    if not seconds:
        raise ConfigError("set data.clip_seconds: the manifest gives no clip duration")
    samples = int(round(seconds * frontend.sample_rate))
    if key == "logmel":
        return compute_logmels(manifest, frontend, cache_root(config), on_error, progress), frontend.n_frames(samples)
    if key == "waveform":
        return compute_waveforms(manifest, frontend.sample_rate, cache_root(config), on_error, progress), samples
    raise ConfigError(f"student {config['student']['name']} reads {key!r}, which no cache provides")


def teacher_label(config: dict) -> str | None:
    """How tables name the run's teacher: its ``id`` (precomputed files) or its name."""
    teacher = config.get("teacher") or {}
    return teacher.get("id") or teacher.get("name")


def validate(config: dict) -> None:
    """Fail at config time, with a clear message, on impossible combinations."""
    for key in ("name", "data", "student"):
        if key not in config:
            raise ConfigError(f"config misses the `{key}` section")
    STUDENTS.get(config["student"]["name"])
    DATASETS.get(config["data"]["dataset"])
    if config.get("teacher"):
        TEACHERS.get(config["teacher"]["name"])
    student_mels = config["student"].get("n_mels")
    frontend_mels = (config.get("frontend") or {}).get("n_mels", FrontendConfig().n_mels)
    if student_mels is not None and student_mels != frontend_mels:
        raise ConfigError(
            f"{config['name']}: student.n_mels is {student_mels} but the front end makes {frontend_mels} mel bands"
        )
    if "regulariser" in config:
        raise ConfigError("`regulariser:` is now `distillation: {lambda, feature: {name, stages, weight}}`")
    dist = config.get("distillation") or {}
    needs_teacher = dist.get("feature") or dist.get("kd") or config["student"]["name"] == "linear_probe"
    if needs_teacher and not config.get("teacher"):
        raise ConfigError(f"{config['name']}: this system learns from a teacher; set `teacher: {{name: ...}}`")


def fit(config: dict, progress: bool = True, overwrite: bool = False) -> Path:
    """Train and test one run; returns its run directory."""
    validate(config)
    run_dir = Path(config["workdir"]) / "runs" / config["name"]
    if (run_dir / "metrics.json").exists() and not overwrite:
        print(f"{run_dir}: already finished (metrics.json); pass --overwrite to retrain")
        return run_dir
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.time()
    torch.set_num_threads(config.get("threads", torch.get_num_threads()))
    L.seed_everything(config.get("seed", 0), workers=True, verbose=False)

    manifest = prepare_dataset(config, progress)
    store = teacher_store(config, manifest, progress)
    system = EastSystem(config, num_classes=len(manifest.classes), embedding_dim=store.dim if store else None)
    input_dir, length = student_inputs(config, manifest, system.input_key, progress)
    dm = ClipDataModule(
        {s: manifest.split(s) for s in ("train", "valid", "test")},
        system.input_key,
        input_dir,
        length,
        store,
        batch_size=config["data"].get("batch_size", 16),
        num_workers=config["data"].get("num_workers", 0),
    )
    for split, n in dm.dropped.items():
        if n:
            print(f"warning: {n} {split} clip(s) left out (unreadable; see bad_clips.json in the cache)")

    tcfg = config.get("trainer", {})
    metric = system.monitor  # val_mAP, or val_accuracy for single-label tasks
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=f"best-epoch{{epoch:03d}}-{metric.removeprefix('val_')}{{{metric}:.4f}}",
        auto_insert_metric_name=False,
        monitor=metric,
        mode="max",
        save_last=True,
    )
    callbacks = [best, EarlyStopping(monitor="val_loss", mode="min", patience=tcfg.get("early_stop_patience", 12))]
    trainer = L.Trainer(
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="logs"),
        callbacks=callbacks,
        max_epochs=tcfg.get("max_epochs", 100),
        max_steps=tcfg.get("max_steps", -1),
        gradient_clip_val=tcfg.get("gradient_clip_val", 1.0),
        accelerator=tcfg.get("accelerator", "auto"),
        devices=tcfg.get("devices", "auto"),
        strategy=tcfg.get("strategy", "auto"),
        num_nodes=tcfg.get("num_nodes", 1),
        precision=tcfg.get("precision", "32-true"),
        log_every_n_steps=tcfg.get("log_every_n_steps", 10),
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=tcfg.get("deterministic", False),
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer.fit(system, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
    best_path = best.best_model_path or str(last)
    test = trainer.test(system, datamodule=dm, ckpt_path=best_path, verbose=False)[0]
    metrics = {
        "name": config["name"],
        "system": config.get("system", config["name"]),
        "student": config["student"]["name"],
        "teacher": teacher_label(config),
        "dataset": manifest.dataset,
        "test": {k.removeprefix("test_"): float(v) for k, v in test.items()},
        f"best_{metric}": float(best.best_model_score) if best.best_model_score is not None else None,
        "best_checkpoint": str(Path(best_path).relative_to(run_dir)) if best_path else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "n_clips": {s: len(d) for s, d in dm.datasets.items()},
        "backbone_parameters": system.student.backbone_parameters(),
        "wall_seconds": round(time.time() - started, 1),
    }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return run_dir
