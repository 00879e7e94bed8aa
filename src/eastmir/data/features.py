"""The ``features`` step: the student's input for every clip, in the store.

- ``logmel``: the normalised log-mel ``(mels, frames)`` of the whole clip,
  keyed by every front-end setting (:class:`~eastmir.frontend.FrontendConfig`)
  and the source file's identity;
- ``waveform``: the clip decoded to mono float32 ``(samples,)`` at the front
  end's rate, for students with a learnable front end (HCNN) and for a
  log-mel computed per batch (frequency jitter).

Entries hold whole clips; the data module crops or pads them to the run's
clip length (``eastmir.training.datamodule``).
"""

from __future__ import annotations

import numpy as np
import torch

from eastmir.audio import DECODER, load_audio
from eastmir.data.fill import Filled, SourceItem, fill
from eastmir.data.manifest import Manifest
from eastmir.data.store import Producer, Store
from eastmir.frontend import FrontendConfig, LogMelFrontend

# Bump when the computation of an entry changes, so old entries are not reused.
LOGMEL_REVISION = 2  # 2: computed on one intra-op thread, whatever the process (same bytes everywhere)
WAVEFORM_REVISION = 1


def logmel_producer(frontend: FrontendConfig) -> Producer:
    settings = {"frontend": frontend.identity(), "decoder": DECODER, "revision": LOGMEL_REVISION}
    return Producer("logmel", "logmel", settings, (frontend.n_mels, None))


def waveform_producer(sample_rate: int) -> Producer:
    settings = {"sample_rate": sample_rate, "decoder": DECODER, "revision": WAVEFORM_REVISION}
    return Producer("waveform", f"waveform{sample_rate}", settings, (None,))


def audio_items(manifest: Manifest) -> list[SourceItem]:
    return [SourceItem(c.clip_id, manifest.audio_file(c), c.content) for c in manifest.clips]


class DecodeAt:
    """Reader: a file → mono float32 ``(samples,)`` at ``sample_rate`` (picklable, for worker processes)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def __call__(self, path) -> np.ndarray:
        return load_audio(path, self.sample_rate)


class LogMels:
    """Computation: waveforms of equal length → their log-mels ``(mels, frames)`` (picklable)."""

    def __init__(self, frontend: FrontendConfig) -> None:
        self.frontend = frontend
        self._module: LogMelFrontend | None = None

    def __getstate__(self) -> dict:
        return {"frontend": self.frontend, "_module": None}

    def __call__(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        if self._module is None:
            self._module = LogMelFrontend(self.frontend)
        with torch.no_grad():
            return list(self._module(torch.from_numpy(np.stack(waveforms))).numpy())


def unchanged(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return arrays


def build_logmels(
    manifest: Manifest,
    store: Store,
    frontend: FrontendConfig,
    on_error: str = "raise",
    progress: bool = True,
    workers: int = 0,
    verify: bool = False,
) -> Filled:
    """Store the log-mel of every clip not stored yet (in ``workers`` processes if > 0).

    One clip at a time, so an entry depends on its clip alone (batched BLAS
    calls may round differently with the batch around it).
    """
    steps = (DecodeAt(frontend.sample_rate), LogMels(frontend), "log-mel")
    return _build(manifest, store, logmel_producer(frontend), *steps, on_error, progress, workers, verify)


def build_waveforms(
    manifest: Manifest,
    store: Store,
    sample_rate: int,
    on_error: str = "raise",
    progress: bool = True,
    workers: int = 0,
    verify: bool = False,
) -> Filled:
    """Store every clip decoded to mono float32 ``(samples,)`` at ``sample_rate``."""
    steps = (DecodeAt(sample_rate), unchanged, "decode")
    return _build(manifest, store, waveform_producer(sample_rate), *steps, on_error, progress, workers, verify)


def _build(manifest, store, producer, read, compute, desc, on_error, progress, workers, verify) -> Filled:
    """Fill ``producer``'s collection with every clip's audio ``read`` and ``compute``d (:func:`fill`)."""
    collection = store.collection(producer)
    report = fill(collection, audio_items(manifest), read, compute, 1, on_error, progress, desc, workers, verify)
    return Filled(collection, report)
