"""The teacher contract.

A **teacher source** fills the store with one embedding ``(frames, dim)``
per clip. It says which file each clip's embedding is made from
(:meth:`TeacherSource.source_file`), how to read that file
(:meth:`~TeacherSource.read_source`) and how to turn what it read into
embeddings (:meth:`~TeacherSource.embed_arrays`); :meth:`~TeacherSource.identity`
lists everything that changes its output (name, version, weights sha256,
options), which keys its entries in the store.

Two kinds:

- :class:`Teacher`: a frozen pretrained network. It reads the clip's audio at
  its ``sample_rate`` and runs ``embed(waveforms (batch, samples)) ->
  (batch, frames, dim)``; ``frame_seconds`` is the hop between its frames
  (``None`` for one clip-level vector).
- ``precomputed`` (:mod:`eastmir.teachers.precomputed`): a user's embedding
  files, validated and imported instead of running a network.

Teachers know nothing of the store or the data module; the pipeline drives them.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eastmir.audio import DECODER, load_audio


class TeacherSource(ABC):
    name: str
    version: str
    revision: int = 1  # bumped when our code's output changes for the same weights
    dim: int
    frame_seconds: float | None

    licence: str = "see its source"
    source: str = ""  # where its weights come from, for `eastmir teachers`
    weights_specs: tuple = ()  # WheelWeights to look for (`eastmir teachers` says whether they are here)
    dims: str = ""  # its embedding width(s), for `eastmir teachers`
    period_words: str | None = None  # its frame period in words, where it has no one period (`eastmir teachers`)
    is_ensemble: bool = False  # combines other teachers (teacher.members): `musicnn+aisfx` builds one

    @classmethod
    def refuses(cls, dataset: str, options: dict[str, Any]) -> str | None:
        """Why this teacher (with these options) must not teach ``dataset``, or None."""
        return None

    def identity(self) -> dict[str, Any]:
        """Everything that changes the embeddings: keys the store entries."""
        return {"name": self.name, "version": self.version, "revision": self.revision, "dim": self.dim}

    @property
    def label(self) -> str:
        """How tables and store folders name this teacher."""
        return self.name

    def source_file(self, audio_file: Path, clip_id: str) -> Path:
        """The file a clip's embedding is made from (the clip's audio by default)."""
        return audio_file

    @abstractmethod
    def read_source(self, path: Path) -> np.ndarray:
        """Read one source file; raise :class:`~eastmir.errors.SourceError` or
        :class:`~eastmir.audio.AudioDecodeError` naming it when it cannot be used."""

    @abstractmethod
    def embed_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays of equal shape from :meth:`read_source` → one ``(frames, dim)`` embedding each."""


class Teacher(TeacherSource, nn.Module):
    """A frozen pretrained network run once, offline, over every clip."""

    sample_rate: int

    def __init__(self) -> None:
        nn.Module.__init__(self)

    @abstractmethod
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at ``sample_rate`` → ``(batch, frames, dim)``."""

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "sample_rate": self.sample_rate,
            "frame_seconds": self.frame_seconds,
            "decoder": DECODER,
        }

    def read_source(self, path: Path) -> np.ndarray:
        return load_audio(path, self.sample_rate)

    @torch.no_grad()
    def embed_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Waveforms of any lengths → one embedding each; waveforms of equal length share a call of :meth:`embed`."""
        tensors = itertools.chain(self.parameters(), self.buffers())  # a teacher may have no weights (pure DSP)
        device = next(tensors, torch.zeros(0)).device
        out: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[int, list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault(len(array), []).append(i)
        for members in groups.values():
            batch = torch.from_numpy(np.stack([arrays[i] for i in members])).to(device)
            embedded = self.embed(batch).float().cpu().numpy()
            for row, i in zip(embedded, members):
                out[i] = row
        return out  # type: ignore[return-value]
