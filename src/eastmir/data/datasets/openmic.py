"""OpenMIC-2018 (Humphrey, Durand & McFee, ISMIR 2018): 20 instruments,
multi-label, partially labelled, 10 s clips.

Expects the official release unpacked under ``root``::

    openmic-2018.npz          X (N, 10, 128) uint8 VGGish, Y_true (N, 20), Y_mask (N, 20), sample_key
    class-map.json            class name → column
    partitions/split01_train.csv, split01_test.csv   one sample key per line
    audio/<key[:3]>/<key>.ogg

Split (``valid_split: authors``, the default): the authors' 2 223 validation
keys (``splits/openmic_split01_valid_authors.csv``, their seeded 15 % of
split01 train), the rest of split01 train for training, the official split01
test set → 12 692 / 2 223 / 5 085. ``valid_split: seeded`` draws another 15 %
(``valid_fraction``, ``valid_seed``), e.g. for a dataset in OpenMIC's layout
that is not the release.

Labels (``labels: binary``, the default, as the authors): a confidence above
0.5 is a positive (1), below 0.5 a negative (0), exactly 0.5 unlabelled (the
mask comes from the confidence). ``labels: confidence`` keeps the
confidences as targets, masked where ``Y_mask`` is false.

With ``export_vggish=True`` the VGGish frames shipped in the npz are written
to ``root/embeddings/vggish/<key>.npy`` (uint8, ``(10, 128)``) for the
``precomputed`` teacher (normalise with ``(x − 128) / 256``).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from eastmir.data.datasets.base import ClassNames, Dataset
from eastmir.data.download import Archive
from eastmir.data.exclusions import Exclusions
from eastmir.data.manifest import Clip, Manifest, ManifestError, written
from eastmir.fetch import atomic_writer
from eastmir.numbers import Probability
from eastmir.registry import DATASETS

ARCHIVES = (  # what `eastmir data prepare openmic --download` fetches
    Archive(
        "https://zenodo.org/records/1432913/files/openmic-2018-v1.0.0.tgz",
        "openmic-2018-v1.0.0.tgz",
        "md5:e4ccf187e2bb5ab2e115416e8aafe7f4",
        "CC BY 4.0",
        "tar",
        strip=1,
    ),
)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_writer(path) as fh:
        np.save(fh, array, allow_pickle=False)


def authors_valid_keys() -> list[str]:
    """The 2 223 sample keys of the authors' OpenMIC validation split."""
    listing = resources.files("eastmir.data.datasets") / "splits" / "openmic_split01_valid_authors.csv"
    return [line.strip() for line in listing.read_text().splitlines() if line.strip()]


def _read_keys(path: Path) -> list[str]:
    if not path.is_file():
        raise ManifestError(f"{path}: OpenMIC split file missing (expected under partitions/)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def prepare(
    root: str | Path,
    progress: bool = True,
    valid_split: Literal["authors", "seeded"] = "authors",
    labels: Literal["binary", "confidence"] = "binary",
    valid_fraction: float = 0.15,
    valid_seed: int = 0,
    export_vggish: bool = True,
    check_audio: bool = True,
    max_bad_fraction: Probability = 0.05,
) -> Manifest:
    """Write ``root/manifest.json`` from the official files; errors name what is missing."""
    root = Path(root)
    npz = root / "openmic-2018.npz"
    if not npz.is_file():
        raise ManifestError(f"{npz}: not found; download OpenMIC-2018 and unpack it into {root}")
    class_map = json.loads((root / "class-map.json").read_text())
    classes = [name for name, _ in sorted(class_map.items(), key=lambda kv: kv[1])]
    data = np.load(npz, allow_pickle=True)
    keys = [str(k) for k in data["sample_key"]]
    index = {k: i for i, k in enumerate(keys)}
    train = _read_keys(root / "partitions" / "split01_train.csv")
    test = _read_keys(root / "partitions" / "split01_test.csv")
    unknown = [k for k in train + test if k not in index]
    if unknown:
        raise ManifestError(f"{root}: {len(unknown)} split keys are not in openmic-2018.npz (first: {unknown[0]})")
    valid = _valid_keys(root, train, valid_split, valid_fraction, valid_seed)
    y_true = data["Y_true"].astype(np.float32)
    if labels == "binary":
        y_mask = y_true != 0.5
        y_true = (y_true > 0.5).astype(np.float32)
    else:
        y_mask = data["Y_mask"].astype(bool)
    clips = []
    excluded = Exclusions(root)
    for key, split in [(k, "valid" if k in valid else "train") for k in train] + [(k, "test") for k in test]:
        rel = f"audio/{key[:3]}/{key}.ogg"
        if check_audio and not (root / rel).is_file():
            excluded.add(rel, None, key, "missing file", f"{root / rel} does not exist")
            continue
        i = index[key]
        clips.append(Clip(key, rel, split, y_true[i], y_mask[i], 10.0))
    if export_vggish:
        _export_vggish(root / "embeddings" / "vggish", keys, data["X"])
    excluded.finish(len(train) + len(test), max_bad_fraction, progress)
    return written(Manifest("openmic", classes, clips, root, "multilabel"))


def _valid_keys(root: Path, train: list[str], split: str, fraction: float, seed: int) -> set[str]:
    """The validation keys, drawn from the training partition: the authors' (``split="authors"``), or a
    seeded ``fraction`` of it."""
    if split != "authors":
        order = np.random.default_rng(seed).permutation(len(train))
        return {train[i] for i in order[: round(fraction * len(train))]}
    valid = set(authors_valid_keys())
    outside = valid - set(train)
    if outside:
        raise ManifestError(
            f"{root}: {len(outside)} of the authors' {len(valid)} validation keys are not in "
            "partitions/split01_train.csv (is this the OpenMIC-2018 release?); prepare with valid_split: seeded "
            "for another dataset in its layout"
        )
    return valid


def _export_vggish(out: Path, keys: list[str], frames: np.ndarray) -> None:
    """The VGGish frames shipped in the npz, one ``<key>.npy`` per clip (those missing), for ``precomputed``."""
    out.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        if not (out / f"{key}.npy").exists():
            _save_npy_atomic(out / f"{key}.npy", frames[i])


def openmic_classes() -> list[str]:
    """OpenMIC-2018's 20 instruments in ``class-map.json``'s column order (the authors' label vectors)."""
    class_map = json.loads((resources.files("eastmir.data.datasets") / "splits" / "openmic_class-map.json").read_text())
    return [name for name, _ in sorted(class_map.items(), key=lambda kv: kv[1])]


@DATASETS.register("openmic")
class OpenMIC(Dataset):
    """OpenMIC-2018: 20 000 clips of 10 s, 20 instruments, multi-label with partial labels."""

    num_classes, task, clip_seconds, archives = 20, "multilabel", 10.0, ARCHIVES
    prepare = staticmethod(prepare)

    @classmethod
    def authors_classes(cls, annotations: str | Path | None, who: str) -> ClassNames:
        return ClassNames(openmic_classes(), "OpenMIC-2018's class-map.json, in column order")
