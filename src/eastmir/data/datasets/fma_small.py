"""FMA-small (Defferrard et al., ISMIR 2017): 8 000 tracks of 30 s, 8 genres,
single-label (use ``task: single_label``), the official
training / validation / test split.

Expects under ``root``: ``fma_metadata/tracks.csv`` (three header rows) and
``fma_small/<id[:3]>/<id>.mp3`` with six-digit ids.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from eastmir.data.datasets.base import Dataset
from eastmir.data.download import Archive
from eastmir.data.exclusions import Exclusions
from eastmir.data.manifest import Clip, Manifest, ManifestError, written
from eastmir.numbers import Probability
from eastmir.registry import DATASETS

ARCHIVES = (  # what `eastmir data prepare fma_small --download` fetches
    Archive(
        "https://os.unil.cloud.switch.ch/fma/fma_metadata.zip",
        "fma_metadata.zip",
        "sha1:f0df49ffe5f2a6008d7dc83c6915b31835dfe733",
        "CC BY 4.0 (metadata)",
        "zip",
    ),
    Archive(
        "https://os.unil.cloud.switch.ch/fma/fma_small.zip",
        "fma_small.zip",
        "sha1:ade154f733639d52e35e32f5593efe5be76c6d70",
        "per track, Creative Commons (see FMA)",
        "zip",
    ),
)

SPLITS = {"training": "train", "validation": "valid", "test": "test"}


def prepare(
    root: str | Path, progress: bool = True, check_audio: bool = True, max_bad_fraction: Probability = 0.05
) -> Manifest:
    root = Path(root)
    table = root / "fma_metadata" / "tracks.csv"
    if not table.is_file():
        raise ManifestError(f"{table}: not found; download fma_metadata and fma_small into {root}")
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh))
    top, sub = rows[0], rows[1]

    def column(a: str, b: str) -> int:
        for i, (x, y) in enumerate(zip(top, sub)):
            if (x, y) == (a, b):
                return i
        raise ManifestError(f"{table}: no ({a}, {b}) column in the header")

    c_subset, c_split, c_genre = column("set", "subset"), column("set", "split"), column("track", "genre_top")
    body = [r for r in rows[3:] if len(r) > c_genre and r[c_subset] == "small"]
    classes = sorted({r[c_genre] for r in body})
    clips = []
    excluded = Exclusions(root)
    for r in body:
        tid = f"{int(r[0]):06d}"
        rel = f"fma_small/{tid[:3]}/{tid}.mp3"
        if check_audio and not (root / rel).is_file():
            excluded.add(rel, None, tid, "missing file", f"{root / rel} does not exist")
            continue
        labels = np.zeros(len(classes), dtype=np.float32)
        labels[classes.index(r[c_genre])] = 1.0
        clips.append(Clip(tid, rel, SPLITS[r[c_split]], labels, np.ones(len(classes), bool), 30.0))
    excluded.finish(len(body), max_bad_fraction, progress)
    return written(Manifest("fma_small", classes, clips, root, "single_label"))


@DATASETS.register("fma_small")
class FMASmall(Dataset):
    """FMA small: 8 000 tracks of 30 s, 8 balanced genres, single-label, its official split."""

    num_classes, task, clip_seconds, archives = 8, "single_label", 30.0, ARCHIVES
    prepare = staticmethod(prepare)
