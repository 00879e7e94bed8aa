"""``eastmir extract``: run a teacher once over a dataset and cache per-clip
embeddings ``(frames, dim)``. Batched, with a progress bar, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError, load_audio
from eastmir.data.features import record_bad_clips, save_npy_atomic
from eastmir.data.manifest import Manifest
from eastmir.teachers.base import EmbeddingStore, Teacher, embedding_dir


def extract_embeddings(
    teacher: Teacher,
    manifest: Manifest,
    cache_root: str | Path,
    batch_size: int = 8,
    on_error: str = "raise",
    progress: bool = True,
) -> EmbeddingStore:
    """Embed every clip of ``manifest`` not yet cached; returns the store.

    Clips of equal length are embedded together in batches of ``batch_size``.
    ``on_error`` is ``"raise"`` (stop, naming the file) or ``"skip"``
    (report, record in ``bad_clips.json``).
    """
    out = embedding_dir(cache_root, manifest.dataset, teacher.cache_name)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "teacher": teacher.name,
        "version": teacher.version,
        "dim": teacher.dim,
        "frame_seconds": teacher.frame_seconds,
        "sample_rate": teacher.sample_rate,
    }
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    todo = [c for c in manifest.clips if not (out / f"{c.clip_id}.npy").exists()]
    bad: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc=f"extract {teacher.name}", unit="clip", disable=not progress or not todo)
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.from_numpy(np.stack([a for _, a in pending]))
        emb = teacher.embed(batch).float().numpy()
        if not np.isfinite(emb).all():
            raise FloatingPointError(f"teacher {teacher.name} gave non-finite embeddings for {[c for c, _ in pending]}")
        for (clip_id, _), e in zip(pending, emb):
            save_npy_atomic(out / f"{clip_id}.npy", e)
        bar.update(len(pending))
        pending.clear()

    for clip in todo:
        try:
            audio = load_audio(manifest.audio_file(clip), teacher.sample_rate)
        except AudioDecodeError as err:
            if on_error == "raise":
                raise
            bad[clip.clip_id] = str(err)
            bar.update(1)
            continue
        if pending and (len(pending) >= batch_size or len(pending[0][1]) != len(audio)):
            flush()
        pending.append((clip.clip_id, audio))
    flush()
    bar.close()
    record_bad_clips(out, bad)
    return EmbeddingStore(out)
