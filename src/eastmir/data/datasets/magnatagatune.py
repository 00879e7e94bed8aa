"""MagnaTagATune (Law et al., ISMIR 2009): top-50 tags, multi-label, ≈29.1 s clips.

Expects under ``root``: ``annotations_final.csv`` (tab-separated: ``clip_id``,
188 tag columns of 0/1, ``mp3_path``) and the audio at ``root/<mp3_path>``
(folders ``0``–``f``). The 50 most frequent tags are kept and clips without
any of them dropped; split by folder as the papers: ``0``–``b`` train, ``c``
validation, ``e``–``f`` test (``d`` unused) → 15 247 / 1 529 / 4 332.
Every label is known (mask all true).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from eastmir.data.manifest import Clip, Manifest, ManifestError
from eastmir.registry import DATASETS

SPLIT_OF_FOLDER = {**{f: "train" for f in "0123456789ab"}, "c": "valid", "e": "test", "f": "test"}


@DATASETS.register("magnatagatune")
def prepare(root: str | Path, progress: bool = True, n_tags: int = 50, check_audio: bool = True) -> Manifest:
    root = Path(root)
    table = root / "annotations_final.csv"
    if not table.is_file():
        raise ManifestError(f"{table}: not found; download MagnaTagATune (annotations and mp3 parts) into {root}")
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header, body = rows[0], rows[1:]
    if header[0] != "clip_id" or header[-1] != "mp3_path":
        raise ManifestError(f"{table}: expected columns clip_id … mp3_path, got {header[0]} … {header[-1]}")
    tags = header[1:-1]
    matrix = np.array([[int(v) for v in r[1:-1]] for r in body], dtype=np.int8)
    top = np.argsort(-matrix.sum(axis=0), kind="stable")[:n_tags]
    classes = [tags[i] for i in top]
    clips = []
    for r, labels in zip(body, matrix[:, top]):
        split = SPLIT_OF_FOLDER.get(r[-1][:1])
        if split is None or not labels.any():
            continue
        if check_audio and not (root / r[-1]).is_file():
            raise ManifestError(f"{root / r[-1]}: audio of clip {r[0]} is missing")
        clips.append(Clip(r[0], r[-1], split, labels.astype(np.float32), np.ones(n_tags, dtype=bool), None))
    manifest = Manifest("magnatagatune", classes, clips, root)
    manifest.save()
    return manifest
