"""The files ``predict`` reads: inputs expanded to audio files, decoded in worker processes, failures kept in order."""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from eastmir.audio import AudioDecodeError, AudioQualityWarning, load_audio
from eastmir.frontend import FrontendConfig
from eastmir.paths import path_kind, regular_file_problem

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus"}


@dataclass
class Failure:
    source: str
    reason: str


class DecodedFiles(Dataset):
    """Files decoded and resampled to ``sample_rate`` (:func:`~eastmir.audio.load_audio`), one per item, for a
    loader's worker processes: ``(path, audio (samples,) or None, the problem or None, warnings)``; a file that
    cannot be read is a problem, not an exception, and its warnings travel back to be shown once, in order."""

    def __init__(self, files: list[str], sample_rate: int, frontend: FrontendConfig | None) -> None:
        self.files, self.sample_rate, self.frontend = files, sample_rate, frontend

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray | None, str | None, list[str]]:
        path = self.files[i]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioQualityWarning)
            try:
                audio, problem = load_audio(path, self.sample_rate, self.frontend), None
            except AudioDecodeError as err:
                audio, problem = None, str(err)
        return path, audio, problem, [str(w.message) for w in caught if issubclass(w.category, AudioQualityWarning)]


def default_workers() -> int:
    """Decoding processes for ``predict`` when not told: none on 2 cores or fewer (the student needs them),
    else half the cores, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores // 2)


def _as_is(item):
    """The loader's item unchanged (no conversion of the arrays to tensors)."""
    return item


def expand_inputs(arguments: Iterable[str]) -> tuple[list[Path], list[Failure]]:
    """Files, folders (their audio files, recursively, sorted) and globs → audio files, and what matched nothing."""
    files: list[Path] = []
    missing: list[Failure] = []
    for argument in arguments:
        path = Path(argument)
        kind = path_kind(path)
        if kind == "a folder":
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                suffixes = ", ".join(sorted(AUDIO_SUFFIXES))
                missing.append(Failure(argument, f"{argument}: a folder with no audio files in it ({suffixes})"))
            files += found
        elif kind is None:
            files.append(path)
        elif kind != "missing":
            missing.append(Failure(argument, f"{argument}: {regular_file_problem(path)}"))
        else:
            matched = sorted(Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file())
            if matched:
                files += matched
            else:
                missing.append(Failure(argument, f"{argument}: no such file, folder or match"))
    return files, missing
