"""The log-mel cache: one ``.npy`` of shape ``(mels, frames)`` per clip, in a
folder named by the front-end config hash, so a changed front end never
reads stale features. Resumable: finished clips are skipped, files are
written atomically.
"""

from __future__ import annotations

import json
import os
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


def compute_logmels(
    manifest: Manifest,
    frontend: FrontendConfig,
    cache_root: str | Path,
    on_error: str = "raise",
    progress: bool = True,
) -> Path:
    """Compute and cache the log-mel of every clip; returns the cache folder.

    ``on_error="raise"`` stops at the first unreadable clip with an error
    naming the file; ``"skip"`` reports it, records it in ``bad_clips.json``
    and leaves it out of training.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    out = feature_dir(Path(cache_root), manifest, frontend)
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontend.json").write_text(json.dumps(frontend.__dict__, indent=1))
    todo = [c for c in manifest.clips if not (out / f"{c.clip_id}.npy").exists()]
    module = LogMelFrontend(frontend)
    bad: dict[str, str] = {}
    for clip in tqdm(todo, desc="log-mel", unit="clip", disable=not progress or not todo):
        try:
            audio = load_audio(manifest.audio_file(clip), frontend.sample_rate)
        except AudioDecodeError as err:
            if on_error == "raise":
                raise
            bad[clip.clip_id] = str(err)
            continue
        with torch.no_grad():
            logmel = module(torch.from_numpy(audio)[None])[0].numpy()
        save_npy_atomic(out / f"{clip.clip_id}.npy", logmel.astype(np.float32))
    record_bad_clips(out, bad)
    return out
