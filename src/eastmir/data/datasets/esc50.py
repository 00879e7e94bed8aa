"""ESC-50 (Piczak, ACM MM 2015): 2 000 environmental sound clips of 5 s, 50
classes, single-label (use ``task: single_label``), five official folds.

Expects under ``root``: ``meta/esc50.csv`` (``filename, fold, target,
category, …``) and ``audio/<filename>``. ``test_fold`` is the test split,
``valid_fold`` (default: the next fold) the validation split, the other three
train; run the five test folds and average for the official protocol.
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

ARCHIVES = (  # what `eastmir data prepare esc50 --download` fetches
    Archive(
        "https://github.com/karolpiczak/ESC-50/archive/master.zip",
        "ESC-50-master.zip",
        None,
        "CC BY-NC 3.0 (ESC-10 subset CC BY)",
        "zip",
        strip=1,
    ),
)


def prepare(
    root: str | Path,
    progress: bool = True,
    test_fold: int = 1,
    valid_fold: int | None = None,
    check_audio: bool = True,
    max_bad_fraction: Probability = 0.05,
) -> Manifest:
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise ManifestError(f"{meta}: not found; download ESC-50 and unpack it into {root}")
    valid_fold = valid_fold or test_fold % 5 + 1
    if not {test_fold, valid_fold} <= {1, 2, 3, 4, 5} or test_fold == valid_fold:
        raise ManifestError(f"ESC-50 folds are 1-5 and test/valid must differ (got {test_fold}/{valid_fold})")
    with open(meta, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = {int(r["target"]): r["category"] for r in rows}
    classes = [names[i] for i in sorted(names)]
    clips = []
    excluded = Exclusions(root)
    for line, r in enumerate(rows, start=2):
        fold, target = int(r["fold"]), int(r["target"])
        rel = f"audio/{r['filename']}"
        if check_audio and not (root / rel).is_file():
            excluded.add(rel, line, Path(r["filename"]).stem, "missing file", f"{root / rel} does not exist")
            continue
        split = "test" if fold == test_fold else "valid" if fold == valid_fold else "train"
        labels = np.zeros(len(classes), dtype=np.float32)
        labels[target] = 1.0
        clips.append(
            Clip(Path(r["filename"]).stem, rel, split, labels, np.ones(len(classes), bool), 5.0, {"fold": fold})
        )
    excluded.finish(len(rows), max_bad_fraction, progress)
    return written(Manifest("esc50", classes, clips, root, "single_label"))


@DATASETS.register("esc50")
class ESC50(Dataset):
    """ESC-50: 2 000 environmental sound clips of 5 s, 50 classes, single-label, five official folds."""

    num_classes, task, clip_seconds, archives = 50, "single_label", 5.0, ARCHIVES
    prepare = staticmethod(prepare)
