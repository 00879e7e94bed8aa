"""``eastmir data prepare``: a dataset's manifest, written once; and opening a prepared dataset."""

from __future__ import annotations

from pathlib import Path

from eastmir.config import RunConfig, check_dataset_options
from eastmir.data.manifest import MANIFEST_NAME, Manifest, load_manifest
from eastmir.data.sources import record_contents
from eastmir.data.subsets import with_train_fraction
from eastmir.errors import ConfigError, ManifestError
from eastmir.paths import path_kind
from eastmir.registry import DATASETS


def prepare(
    dataset: str, root: str | Path, options: dict | None = None, progress: bool = True, download: bool = False
) -> Manifest:
    """Write ``root/manifest.json`` for ``dataset`` (``synth``: render it first); options are checked first.

    ``download``: fetch, verify and extract the official archives into ``root`` first
    (:mod:`eastmir.data.download`; resumable). Each clip's audio file is recorded with its content's sha256
    (:mod:`eastmir.data.sources`), which keys its store entries.
    """
    declared = DATASETS.get(dataset)
    options = check_dataset_options(dataset, dict(options or {}))
    kind = path_kind(root)
    if kind not in ("a folder", "missing"):
        raise ManifestError(f"--root {root}: {kind or 'a file'} stands there; --root names the dataset's folder")
    if download:
        from eastmir.data.download import download_archives

        if not declared.archives:
            offered = [name for name in DATASETS.names() if DATASETS.get(name).archives]
            raise ManifestError(f"{dataset}: no download is known; datasets with --download: {', '.join(offered)}")
        download_archives(declared.archives, root, progress)
    manifest = declared.prepare(Path(root), progress=progress, **options)
    present = [c for c in manifest.clips if manifest.audio_file(c).is_file()]
    for clip, content in zip(present, record_contents([manifest.audio_file(c) for c in present])):
        clip.content = content
    manifest.save()
    return manifest


def load_dataset(root: str | Path) -> Manifest:
    """The dataset prepared at ``root`` (its ``manifest.json``)."""
    return load_manifest(root)


def open_dataset(config: RunConfig) -> Manifest:
    """The prepared dataset at ``data.root``; it is read, never prepared or rewritten here."""
    root = Path(config.data.root)
    if not (root / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"{root}: no prepared dataset here (no {MANIFEST_NAME}); run `eastmir data prepare "
            f"{config.data.dataset} --root {root}` first, or point data.root at a prepared dataset"
        )
    manifest = load_manifest(root)
    if manifest.dataset != config.data.dataset:
        raise ConfigError(
            f"data.root {root} holds a {manifest.dataset!r} dataset but data.dataset is {config.data.dataset!r}"
        )
    return manifest


def run_manifest(config: RunConfig) -> Manifest:
    """The clips a run reads: the prepared dataset, its training split cut to ``data.train_fraction``."""
    manifest = open_dataset(config)
    return with_train_fraction(manifest, config.data.train_fraction, config.data.subset_seed)
