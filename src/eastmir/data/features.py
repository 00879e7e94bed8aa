"""Per-clip input caches: the log-mel ``(mels, frames)`` in a folder named by
the front-end config hash (a changed front end never reads stale features),
or the decoded waveform ``(samples,)`` for students that read audio.
Resumable: finished clips are skipped, files are written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError, FrontendConfig, LogMelFrontend, load_audio
from eastmir.data.manifest import Manifest


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def record_bad_clips(folder: Path, bad: dict[str, str]) -> None:
    """Write the skipped clips and why to ``folder/bad_clips.json`` and say so."""
    if bad:
        (folder / "bad_clips.json").write_text(json.dumps(bad, indent=1))
        print(f"warning: skipped {len(bad)} unreadable clip(s); see {folder / 'bad_clips.json'}")


def feature_dir(cache_root: Path, manifest: Manifest, frontend: FrontendConfig) -> Path:
    return Path(cache_root) / "logmel" / manifest.dataset / frontend.cache_key()


def waveform_dir(cache_root: Path, manifest: Manifest, sample_rate: int) -> Path:
    return Path(cache_root) / "waveform" / manifest.dataset / f"{sample_rate}Hz"


def cache_per_clip(
    manifest: Manifest,
    out: Path,
    sample_rate: int,
    transform: Callable[[np.ndarray], np.ndarray],
    on_error: str = "raise",
    progress: bool = True,
    desc: str = "cache",
) -> Path:
    """Decode every clip at ``sample_rate``, apply ``transform`` and store it as ``out/<clip_id>.npy``.

    Finished clips are skipped (resumable). ``on_error="raise"`` stops at the
    first unreadable clip with an error naming the file; ``"skip"`` reports
    it, records it in ``out/bad_clips.json`` and leaves it out of training.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in manifest.clips if not (out / f"{c.clip_id}.npy").exists()]
    bad: dict[str, str] = {}
    for clip in tqdm(todo, desc=desc, unit="clip", disable=not progress or not todo):
        try:
            audio = load_audio(manifest.audio_file(clip), sample_rate)
        except AudioDecodeError as err:
            if on_error == "raise":
                raise
            bad[clip.clip_id] = str(err)
            continue
        save_npy_atomic(out / f"{clip.clip_id}.npy", transform(audio))
    record_bad_clips(out, bad)
    return out


def compute_logmels(
    manifest: Manifest,
    frontend: FrontendConfig,
    cache_root: str | Path,
    on_error: str = "raise",
    progress: bool = True,
) -> Path:
    """Cache the log-mel ``(mels, frames)`` of every clip; returns the cache folder."""
    out = feature_dir(Path(cache_root), manifest, frontend)
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontend.json").write_text(json.dumps(frontend.__dict__, indent=1))
    module = LogMelFrontend(frontend)

    def logmel(audio: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(audio)[None])[0].numpy().astype(np.float32)

    return cache_per_clip(manifest, out, frontend.sample_rate, logmel, on_error, progress, "log-mel")


def compute_waveforms(
    manifest: Manifest, sample_rate: int, cache_root: str | Path, on_error: str = "raise", progress: bool = True
) -> Path:
    """Cache every clip decoded to mono float32 ``(samples,)`` at ``sample_rate`` (for waveform students)."""
    out = waveform_dir(Path(cache_root), manifest, sample_rate)
    return cache_per_clip(manifest, out, sample_rate, lambda a: a.astype(np.float32), on_error, progress, "decode")
