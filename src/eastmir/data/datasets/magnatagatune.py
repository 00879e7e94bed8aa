"""MagnaTagATune (Law et al., ISMIR 2009): top-50 tags, multi-label, ≈29.1 s clips.

Expects under ``root``: ``annotations_final.csv`` (tab-separated: ``clip_id``,
188 tag columns of 0/1, ``mp3_path``) and the audio at ``root/<mp3_path>``
(folders ``0``–``f``). The 50 most frequent tags are kept and clips without
any of them dropped. Split (``split: authors``, the default): the 1 529
validation and 4 332 test clip ids of the authors' released manifests
(``splits/magnatagatune_*_clip_ids_authors.txt``), the other clips of folders
``0``–``b`` for training; ``split: folders``: by folder as the papers
describe it, ``0``–``b`` train, ``c`` validation, ``e``–``f`` test (``d``
unused). Both give 15 247 / 1 529 / 4 332 on the release. Every label is known
(mask all true).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from eastmir.data.datasets.base import ClassNames, Dataset
from eastmir.data.download import Archive
from eastmir.data.exclusions import Exclusions
from eastmir.data.manifest import Clip, Manifest, ManifestError, written
from eastmir.errors import ConfigError, RunError
from eastmir.numbers import Probability
from eastmir.registry import DATASETS

MTAT = "https://mirg.city.ac.uk/datasets/magnatagatune"
ARCHIVES = (  # what `eastmir data prepare magnatagatune --download` fetches
    Archive(f"{MTAT}/annotations_final.csv", "annotations_final.csv", None, "CC BY-NC-SA 3.0"),
    *(Archive(f"{MTAT}/mp3.zip.00{i}", f"mp3.zip.00{i}", None, "CC BY-NC-SA 3.0", join="mp3.zip") for i in (1, 2, 3)),
)

SPLIT_OF_FOLDER = {**{f: "train" for f in "0123456789ab"}, "c": "valid", "e": "test", "f": "test"}


def authors_clip_ids(split: str) -> set[str]:
    """The clip ids of the authors' ``valid`` or ``test`` split."""
    listing = resources.files("eastmir.data.datasets") / "splits" / f"magnatagatune_{split}_clip_ids_authors.txt"
    return {line.strip() for line in listing.read_text().splitlines() if line.strip()}


def _split_of(clip_id: str, path: str, authors: dict[str, set[str]] | None) -> str | None:
    if authors is None:
        return SPLIT_OF_FOLDER.get(path[:1])
    for split, ids in authors.items():
        if clip_id in ids:
            return split
    return "train" if SPLIT_OF_FOLDER.get(path[:1]) == "train" else None


def prepare(
    root: str | Path,
    progress: bool = True,
    n_tags: int = 50,
    split: Literal["authors", "folders"] = "authors",
    check_audio: bool = True,
    max_bad_fraction: Probability = 0.05,
) -> Manifest:
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
    excluded = Exclusions(root)
    authors = {s: authors_clip_ids(s) for s in ("valid", "test")} if split == "authors" else None
    for line, (r, labels) in enumerate(zip(body, matrix[:, top]), start=2):
        part = _split_of(r[0], r[-1], authors)
        if part is None:
            why = "the authors' split" if authors else "the papers' split"
            excluded.add(r[-1], line, r[0], "unused folder", f"folder {r[-1][:1]} is not in {why}", bad=False)
            continue
        if not labels.any():
            excluded.add(r[-1], line, r[0], f"no top-{n_tags} tag", "clips without a top tag are dropped", bad=False)
            continue
        if check_audio and not (root / r[-1]).is_file():
            excluded.add(r[-1], line, r[0], "missing file", f"{root / r[-1]} does not exist")
            continue
        clips.append(Clip(r[0], r[-1], part, labels.astype(np.float32), np.ones(n_tags, dtype=bool), None))
    excluded.finish(len(body), max_bad_fraction, progress)
    return written(Manifest("magnatagatune", classes, clips, root, "multilabel"))


def magnatagatune_classes(annotations: str | Path, n_tags: int = 50) -> tuple[list[str], list[list[str]]]:
    """The top-``n_tags`` tags of ``annotations_final.csv`` in the authors' order (``parse_magna.py``:
    ``numpy.argsort(-counts)`` over the tag columns), and the groups of tags among them whose counts tie
    (their order is numpy's unstable sort's, which can differ between machines)."""
    path = Path(annotations)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except OSError as err:
        raise RunError(f"{path}: cannot read MagnaTagATune's annotations ({err.strerror})") from None
    if len(rows) < 2 or len(rows[0]) < n_tags + 2 or rows[0][0] != "clip_id":
        raise RunError(
            f"{path}: not MagnaTagATune's annotations_final.csv (a tab-separated header clip_id, the tags, mp3_path)"
        )
    tags = rows[0][1:-1]
    try:
        counts = np.asarray([[int(v) for v in r[1:-1]] for r in rows[1:]], dtype=np.int32).sum(axis=0)
    except ValueError as err:
        raise RunError(f"{path}: a tag value is not 0 or 1 ({err})") from None
    top = np.argsort(-counts)[:n_tags]  # the authors' expression, numpy's default (unstable) sort
    chosen = [tags[i] for i in top]
    by_count: dict[int, list[str]] = {}
    for i in top:
        by_count.setdefault(int(counts[i]), []).append(tags[i])
    return chosen, [group for group in by_count.values() if len(group) > 1]


@DATASETS.register("magnatagatune")
class MagnaTagATune(Dataset):
    """MagnaTagATune: 29.1 s clips, the 50 most frequent tags, multi-label."""

    num_classes, task, clip_seconds, archives = 50, "multilabel", 29.1, ARCHIVES
    prepare = staticmethod(prepare)

    @classmethod
    def authors_classes(cls, annotations: str | Path | None, who: str) -> ClassNames:
        if annotations is None:
            raise ConfigError(
                f"{who}: its 50 tags are ordered by their count in MagnaTagATune's annotations_final.csv, and "
                "no published list is known to be the authors' order: pass yours with --annotations FILE"
            )
        names, ties = magnatagatune_classes(annotations)
        source = f"the top 50 of {annotations} by count, numpy.argsort(-counts) as the authors' parse_magna.py"
        return ClassNames(names, source, ties)
