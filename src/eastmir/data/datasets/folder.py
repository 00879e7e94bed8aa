"""``folder``: your own recordings and a spreadsheet of labels, no code.

::

    eastmir data prepare folder --root DIR --set csv=labels.csv

``DIR/labels.csv`` (any name, ``csv=``) has a header row and one row per clip:

- a **path** column, relative to ``DIR``: ``path``, ``file`` or ``filename``
  are found by themselves, any other name with ``path_column=``;
- the labels, either in **one column** (``labels``, ``label``, ``tags``,
  ``classes``, ``class`` or ``category``, or ``labels_column=``) holding the
  clip's classes joined by ``separator`` (default ``;``: ``piano;voice``;
  every class not listed is negative), or in **one column per class** holding
  ``1`` / ``0`` / blank (also ``true``/``false``, ``yes``/``no``); blank means
  unknown and is masked, as in OpenMIC. ``class_columns=[…]`` picks the class
  columns; otherwise every other column is a class, except columns with no
  0/1/blank value at all (metadata such as an artist), which are ignored and
  named;
- optionally a **split** column (``split``, or ``split_column=``) with
  ``train`` / ``valid`` / ``test`` (also ``validation``, ``val``, ``training``,
  ``testing``). Rows without one are split with ``split_fractions`` (default
  0.7 / 0.1 / 0.2) by iterative stratification (``iterative-stratification``,
  the maintained implementation of Sechidis et al. 2011), seeded (``seed=``),
  so every class with enough clips is in every split and the split is the
  same on every run; a class too rare for that is named.

The task is ``single_label`` when every clip has exactly one class and no
unknown label, else ``multilabel`` (``task=`` overrides). Classes keep the
order of their columns, or sorted names for a labels column (``classes=[…]``
fixes the list; a label outside it leaves the row out). Audio: anything
soundfile reads (WAV, FLAC, OGG, MP3, …) at any sample rate and channel
count; clips may differ in length (``eastmir fit`` crops or pads them to
``data.clip_seconds``, see the README). With ``check_audio`` (default) every
file is decoded once here, so a broken file is reported now, not mid-training.

Nothing is dropped without a line: every row left out (a wrong column count,
an empty or duplicate path, a path leaving ``DIR`` through ``..``, an
absolute path or a symlink, a missing, empty, undecodable or non-finite
file, an unknown label or split) is written to ``DIR/excluded.csv`` with its
file, CSV line and reason; more than ``max_bad_fraction`` (default 0.05) of
bad rows stops ``prepare``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError, read_audio
from eastmir.data.datasets.base import Dataset
from eastmir.data.datasets.label_table import SPLIT_NAMES, LabelTable, RowLabels
from eastmir.data.exclusions import Exclusions
from eastmir.data.manifest import MANIFEST_NAME, SPLITS, Clip, Manifest, written
from eastmir.errors import ManifestError
from eastmir.numbers import Probability
from eastmir.paths import regular_file_problem
from eastmir.registry import DATASETS


@dataclass
class Row:
    line: int
    path: str
    labels: np.ndarray
    mask: np.ndarray
    split: str | None
    clip_id: str = ""
    duration: float | None = None
    extra: dict = field(default_factory=dict)


def _within(root: Path, given: str) -> str:
    """An absolute path to a file inside ``root`` as the relative path it is (others are returned as given)."""
    if not Path(given).is_absolute():
        return given
    try:
        return Path(given).resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return given


def _inside(root: Path, rel: str) -> bool:
    """Whether ``root/rel`` stays inside ``root`` once ``..`` and symlinks are resolved."""
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")):
        return False
    real_root = root.resolve()
    return (root / rel).resolve().is_relative_to(real_root)


def _decode_check(path: Path) -> tuple[str, str] | float:
    """The clip's duration in seconds, or ``(kind, detail)`` of why it cannot be used (the one decode check
    of :func:`eastmir.audio.read_audio`, which training and ``predict`` apply too)."""
    try:
        audio, sr = read_audio(path, warn=False)
    except AudioDecodeError as err:
        return err.kind, str(err).removeprefix(f"{path}: ")
    return audio.shape[0] / sr


def _stratified_split(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """``train`` / ``valid`` / ``test`` for each row, by iterative stratification on the positive labels."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(labels)
    out = np.full(n, "train", dtype=object)
    y = (labels > 0.5).astype(int)
    if y.shape[1] == 1:  # one class: stratify on having it or not (the splitter wants two columns)
        y = np.concatenate([y, 1 - y], axis=1)
    _, f_valid, f_test = fractions
    rest = np.arange(n)
    for name, fraction, of in (("test", f_test, 1.0), ("valid", f_valid, 1.0 - f_test)):
        size = round(fraction / of * len(rest)) if of > 0 else 0
        if size <= 0 or size >= len(rest):
            continue
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, take = next(splitter.split(np.zeros(len(rest)), y[rest]))
        out[rest[take]] = name
        rest = rest[keep]
    return out


def prepare(
    root: str | Path,
    progress: bool = True,
    csv: str = "labels.csv",
    path_column: str | None = None,
    labels_column: str | None = None,
    separator: str = ";",
    class_columns: list[str] | None = None,
    classes: list[str] | None = None,
    split_column: str | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    task: Literal["auto", "multilabel", "single_label"] = "auto",
    max_bad_fraction: Probability = 0.05,
    check_audio: bool = True,
) -> Manifest:
    """Write ``root/manifest.json`` and ``root/excluded.csv`` from a folder of audio and a CSV of labels."""
    root = Path(root)
    csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
    if not csv_path.is_file():
        raise ManifestError(f"{csv_path}: no label table; give its name relative to --root with --set csv=FILE")
    if abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
        raise ManifestError(f"split_fractions {split_fractions} must be three non-negative numbers summing to 1")
    table = LabelTable.read(csv_path, path_column, labels_column, split_column)
    excluded = Exclusions(root)
    for line, cells in table.malformed.items():
        column = table.header.index(table.path_column)
        file = cells[column] if len(cells) > column else ""
        excluded.add(file, line, "", "wrong column count", f"{len(cells)} fields, the header has {len(table.header)}")
    class_list, parse = table.layout(separator, class_columns, classes)
    rows = _rows(root, table, parse, excluded)
    if check_audio and rows:
        rows = _with_durations(root, rows, excluded, progress)
    chosen_task = _task(rows, task)
    if chosen_task == "single_label":
        for row in [r for r in rows if r.labels.sum() != 1 or not r.mask.all()]:
            excluded.add(
                row.path, row.line, row.clip_id, "not exactly one label", "a single-label clip needs one class"
            )
        rows = [r for r in rows if r.labels.sum() == 1 and r.mask.all()]
    try:
        excluded.finish(table.lines, max_bad_fraction, progress)
    except ManifestError:
        (root / MANIFEST_NAME).unlink(missing_ok=True)  # never leave an older manifest that no longer matches
        raise
    _check_learnable(rows, class_list, chosen_task, csv_path)
    _assign_splits(rows, split_fractions, seed)
    _warn_missing_classes(rows, class_list)
    clips = [
        Clip(r.clip_id, r.path, r.split, r.labels.astype(np.float32), r.mask, r.duration, {"line": r.line})
        for r in sorted(rows, key=lambda r: r.line)
    ]
    return written(Manifest("folder", class_list, clips, root, chosen_task))


def _rows(root: Path, table: LabelTable, parse: RowLabels, excluded: Exclusions) -> list[Row]:
    """The table's usable rows: labels parsed, split known, path inside ``root`` naming a file, no duplicate
    clip; every other row goes to ``excluded`` with its reason."""
    rows: list[Row] = []
    seen: dict[str, int] = {}
    stems: dict[str, set[str]] = {}  # clip id without the extension → the paths that have it
    for values in table.rows.values():
        given = _within(root, values[table.path_column].replace("\\", "/"))
        if given:
            stems.setdefault(Path(given).with_suffix("").as_posix(), set()).add(given)
    for line, values in table.rows.items():
        rel = _within(root, values[table.path_column].replace("\\", "/"))
        parsed = parse(values)
        if isinstance(parsed, tuple) and isinstance(parsed[0], str):
            excluded.add(rel, line, "", *parsed)
            continue
        split, problem = _split_of(values, table.split_column)
        problem = problem or _path_problem(root, rel)
        if problem:
            excluded.add(rel, line, "", *problem)
            continue
        clip_id = Path(rel).with_suffix("").as_posix()
        if len(stems.get(clip_id, ())) > 1:  # song.ogg and song.flac: two clips, named with their extensions
            clip_id = rel
        if clip_id in seen:
            excluded.add(rel, line, clip_id, "duplicate clip", f"the same clip as line {seen[clip_id]}")
            continue
        missing = regular_file_problem(root / rel)
        if missing is not None:
            kind = "missing file" if missing == "does not exist" else "not a file"
            excluded.add(rel, line, clip_id, kind, f"{root / rel} {missing}")
            continue
        seen[clip_id] = line
        rows.append(Row(line, rel, *parsed, split, clip_id))
    return rows


def _split_of(values: dict[str, str], column: str | None) -> tuple[str | None, tuple[str, ...] | None]:
    """The row's split (``None``: drawn later), or why the row is refused."""
    if column is None or not values[column]:
        return None, None
    split = SPLIT_NAMES.get(values[column].lower())
    if split is None:
        return None, ("unknown split", f"split {values[column]!r} is not one of {', '.join(SPLITS)}")
    return split, None


def _path_problem(root: Path, rel: str) -> tuple[str, ...] | None:
    """Why the row's path cannot be a clip of ``root`` (empty, a link loop, outside ``root``), or ``None``."""
    if not rel:
        return ("empty path",)
    try:
        inside = _inside(root, rel)
    except (RuntimeError, OSError):  # Python raises RuntimeError (3.11) or OSError (3.13) on a link loop
        return "symlink loop", f"{rel} is a symbolic link that leads back to itself"
    if not inside:
        return "path leaves the root", f"{rel} is outside {root} (absolute, '..' or a symlink)"
    return None


def _with_durations(root: Path, rows: list[Row], excluded: Exclusions, progress: bool) -> list[Row]:
    """The rows whose audio decodes, with their durations; the others go to ``excluded``."""
    with ThreadPoolExecutor(max_workers=4) as pool:  # libsndfile releases the GIL
        checks = list(
            tqdm(
                pool.map(lambda r: _decode_check(root / r.path), rows),
                total=len(rows),
                desc="check audio",
                unit="clip",
                disable=not progress,
            )
        )
    kept = []
    for row, check in zip(rows, checks):
        if isinstance(check, tuple):
            excluded.add(row.path, row.line, row.clip_id, *check)
        else:
            row.duration = round(check, 6)
            kept.append(row)
    return kept


def _check_learnable(rows: list[Row], class_list: list[str], task: str, csv_path: Path) -> None:
    """Stop when too few clips are left, or no class has both a clip with it and one without."""
    if len(rows) < 3:
        raise ManifestError(
            f"{csv_path}: only {len(rows)} usable clip(s); a dataset needs at least 3 (train, valid, test)"
        )
    with_class, without = np.stack([r.labels * r.mask for r in rows]), np.stack([(1 - r.labels) * r.mask for r in rows])
    learnable = (with_class.any(axis=0) & without.any(axis=0)).any()
    if not learnable or (task == "single_label" and len(class_list) < 2):
        raise ManifestError(
            f"{csv_path}: no class has both a clip with it and a clip without it, so there is nothing to learn; "
            "add clips without the class (an empty labels cell) or clips of another class"
        )


def _assign_splits(rows: list[Row], fractions: tuple[float, float, float], seed: int) -> None:
    """Draw the split of every row the table gave none, stratified on the labels."""
    unassigned = [i for i, r in enumerate(rows) if r.split is None]
    if unassigned:
        drawn = _stratified_split(np.stack([rows[i].labels * rows[i].mask for i in unassigned]), fractions, seed)
        for i, split in zip(unassigned, drawn):
            rows[i].split = str(split)


def _task(rows: list[Row], task: str) -> str:
    if task != "auto":
        return task
    single = rows and all(r.labels.sum() == 1 and r.mask.all() for r in rows)
    return "single_label" if single else "multilabel"


def _warn_missing_classes(rows: list[Row], class_list: list[str]) -> None:
    gaps = []
    for split in SPLITS:
        present = np.zeros(len(class_list), bool)
        for r in rows:
            if r.split == split:
                present |= (r.labels > 0.5) & r.mask
        gaps += [f"{class_list[i]} ({split})" for i in np.flatnonzero(~present)]
    if gaps:
        print(f"warning: no positive clip of {', '.join(gaps)}: too few clips of these classes to stratify")


@DATASETS.register("folder")
class Folder(Dataset):
    """A folder of your own audio with a CSV of labels: classes, task and clip lengths come from the data."""

    task = None
    prepare = staticmethod(prepare)
