"""``eastmir features``: the store's student inputs (log-mels or waveforms) of a run's dataset."""

from __future__ import annotations

from pathlib import Path

from eastmir.config import RunConfig
from eastmir.data.features import build_logmels, build_waveforms
from eastmir.data.fill import Filled
from eastmir.data.manifest import Manifest
from eastmir.data.store import Store


def store_at(root: str | Path) -> Store:
    """The store whose root is ``root``."""
    return Store(Path(root))


def open_store(config: RunConfig) -> Store:
    """The run's store (``cache_dir``)."""
    return Store(Path(config.cache_dir))


def features(
    config: RunConfig, manifest: Manifest, store: Store, progress: bool = True, verify: bool = False
) -> Filled | None:
    """Store the input the run's student reads (``logmel`` or ``waveform``); nothing for a probe (TeacherLR).

    Built in ``data.num_workers`` processes (0: in this one); ``verify`` re-reads
    every stored entry and rebuilds a corrupted one.
    """
    key, data = config.input_key, config.data
    if not key.from_audio:
        return None
    if key.reads_logmel:
        return build_logmels(manifest, store, config.frontend, data.on_error, progress, data.num_workers, verify)
    return build_waveforms(
        manifest, store, config.frontend.sample_rate, data.on_error, progress, data.num_workers, verify
    )
