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

import csv as csvlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError, read_audio
from eastmir.data.datasets.base import Dataset
from eastmir.data.exclusions import Exclusions
from eastmir.data.manifest import MANIFEST_NAME, SPLITS, Clip, Manifest
from eastmir.errors import ManifestError
from eastmir.numbers import Probability
from eastmir.paths import regular_file_problem
from eastmir.registry import DATASETS

PATH_COLUMNS = ("path", "file", "filename")
LABEL_COLUMNS = ("labels", "label", "tags", "classes", "class", "category")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "test": "test",
    "testing": "test",
}
POSITIVE = {"1", "1.0", "true", "yes", "y"}
NEGATIVE = {"0", "0.0", "false", "no", "n"}


def _find(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, csv_path: Path) -> str | None:
    lower = {h.lower(): h for h in header}
    if wanted is not None:
        if wanted not in header and wanted.lower() not in lower:
            raise ManifestError(f"{csv_path}: no {what} column {wanted!r}; columns: {', '.join(header)}")
        return wanted if wanted in header else lower[wanted.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


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
    table = _read_table(csv_path)
    if not table:
        raise ManifestError(f"{csv_path}: empty table")
    (_, header), body = table[0], table[1:]
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise ManifestError(
            f"{csv_path}: the header names column(s) {', '.join(map(repr, repeated))} more than once; a row's values "
            "would go to one of them silently: rename or remove the repeated column"
        )
    path_col = _find(header, path_column, PATH_COLUMNS, "path", csv_path)
    if path_col is None:
        raise ManifestError(
            f"{csv_path}: no path column (looked for {', '.join(PATH_COLUMNS)}); name yours with "
            f"--set path_column=NAME; columns: {', '.join(header)}"
        )
    split_col = _find(header, split_column, ("split",), "split", csv_path)
    labels_col = _find(header, labels_column, LABEL_COLUMNS, "labels", csv_path)
    rows_by_line = {
        line: dict(zip(header, (c.strip() for c in cells))) for line, cells in body if len(cells) == len(header)
    }
    excluded = Exclusions(root)
    for line, cells in body:
        if len(cells) != len(header):
            file = cells[header.index(path_col)] if len(cells) > header.index(path_col) else ""
            excluded.add(file, line, "", "wrong column count", f"{len(cells)} fields, the header has {len(header)}")

    if labels_col is not None:
        class_list, parse = _labels_column_layout(rows_by_line, labels_col, separator, classes)
    else:
        class_list, parse = _class_columns_layout(
            rows_by_line, header, path_col, split_col, class_columns, classes, csv_path
        )

    rows: list[Row] = []
    seen: dict[str, int] = {}
    stems: dict[str, set[str]] = {}  # clip id without the extension → the paths that have it
    for values in rows_by_line.values():
        given = _within(root, values[path_col].replace("\\", "/"))
        if not given:
            continue
        stems.setdefault(Path(given).with_suffix("").as_posix(), set()).add(given)
    for line, values in rows_by_line.items():
        rel = _within(root, values[path_col].replace("\\", "/"))
        parsed = parse(values)
        if isinstance(parsed, tuple) and isinstance(parsed[0], str):
            excluded.add(rel, line, "", *parsed)
            continue
        labels, mask = parsed
        split = None
        if split_col is not None and values[split_col]:
            split = SPLIT_NAMES.get(values[split_col].lower())
            if split is None:
                excluded.add(
                    rel, line, "", "unknown split", f"split {values[split_col]!r} is not one of {', '.join(SPLITS)}"
                )
                continue
        if not rel:
            excluded.add(rel, line, "", "empty path")
            continue
        try:
            inside = _inside(root, rel)
        except (RuntimeError, OSError):  # Python raises RuntimeError (3.11) or OSError (3.13) on a link loop
            excluded.add(rel, line, "", "symlink loop", f"{rel} is a symbolic link that leads back to itself")
            continue
        if not inside:
            excluded.add(
                rel, line, "", "path leaves the root", f"{rel} is outside {root} (absolute, '..' or a symlink)"
            )
            continue
        clip_id = Path(rel).with_suffix("").as_posix()
        if len(stems.get(clip_id, ())) > 1:  # song.ogg and song.flac: two clips, named with their extensions
            clip_id = rel
        if clip_id in seen:
            excluded.add(rel, line, clip_id, "duplicate clip", f"the same clip as line {seen[clip_id]}")
            continue
        problem = regular_file_problem(root / rel)
        if problem is not None:
            kind = "missing file" if problem == "does not exist" else "not a file"
            excluded.add(rel, line, clip_id, kind, f"{root / rel} {problem}")
            continue
        seen[clip_id] = line
        rows.append(Row(line, rel, labels, mask, split, clip_id))

    if check_audio and rows:
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
        rows = kept

    chosen_task = _task(rows, task)
    if chosen_task == "single_label":
        for row in [r for r in rows if r.labels.sum() != 1 or not r.mask.all()]:
            excluded.add(
                row.path, row.line, row.clip_id, "not exactly one label", "a single-label clip needs one class"
            )
        rows = [r for r in rows if r.labels.sum() == 1 and r.mask.all()]
    manifest_file = root / MANIFEST_NAME
    try:
        excluded.finish(len(body), max_bad_fraction, progress)
    except ManifestError:
        manifest_file.unlink(missing_ok=True)  # never leave an older manifest that no longer matches the table
        raise
    if len(rows) < 3:
        raise ManifestError(
            f"{csv_path}: only {len(rows)} usable clip(s); a dataset needs at least 3 (train, valid, test)"
        )

    labelled = np.stack([r.labels * r.mask for r in rows]), np.stack([(1 - r.labels) * r.mask for r in rows])
    learnable = (labelled[0].any(axis=0) & labelled[1].any(axis=0)).any()
    if not learnable or (chosen_task == "single_label" and len(class_list) < 2):
        raise ManifestError(
            f"{csv_path}: no class has both a clip with it and a clip without it, so there is nothing to learn; "
            "add clips without the class (an empty labels cell) or clips of another class"
        )
    unassigned = [i for i, r in enumerate(rows) if r.split is None]
    if unassigned:
        drawn = _stratified_split(np.stack([rows[i].labels * rows[i].mask for i in unassigned]), split_fractions, seed)
        for i, split in zip(unassigned, drawn):
            rows[i].split = str(split)
    _warn_missing_classes(rows, class_list)
    clips = [
        Clip(r.clip_id, r.path, r.split, r.labels.astype(np.float32), r.mask, r.duration, {"line": r.line})
        for r in sorted(rows, key=lambda r: r.line)
    ]
    manifest = Manifest("folder", class_list, clips, root, chosen_task)
    manifest.save()
    return manifest


def _read_table(csv_path: Path) -> list[tuple[int, list[str]]]:
    """The CSV's non-empty rows with their line numbers; a file that is not UTF-8 is named with the line."""
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ManifestError(
            f"{csv_path}: line {line} is not UTF-8 (byte 0x{raw[err.start]:02x}; saved as Latin-1 or Windows-1252?); "
            "save the table as UTF-8"
        ) from None
    reader = csvlib.reader(io.StringIO(text, newline=""))
    return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]


def _refuse_variants(names: list[str], what: str) -> None:
    """Stop when class names differ only in case or spacing (``piano``, ``Piano ``): they would become separate
    classes. ``what`` says where they come from."""
    by_form: dict[str, set[str]] = {}
    for name in names:
        by_form.setdefault(" ".join(name.lower().split()), set()).add(name)
    variants = sorted(sorted(v) for v in by_form.values() if len(v) > 1)
    if variants:
        shown = "; ".join(" / ".join(map(repr, v)) for v in variants[:5])
        raise ManifestError(
            f"{what}: names that differ only in case or spacing ({shown}) would become separate classes; "
            "spell each class one way"
        )


def _label_variants(names: list[list[str]], column: str, separator: str) -> None:
    """Stop when labels differ only in case or spacing, or hold another separator while this one never separates
    two labels (then the other is likely the separator meant): they would become classes."""
    _refuse_variants([n for row in names for n in row], f"column {column!r}")
    if any(len(row) > 1 for row in names):
        return  # the separator does separate labels here: another mark inside a label is part of its name
    for sep in ",;|":
        glued = sorted({n for row in names for n in row if sep != separator and sep in n})
        if glued:
            raise ManifestError(
                f"column {column!r}: labels such as {glued[0]!r} hold {sep!r}, but separator is {separator!r}; "
                f"set separator={sep!r} (--set separator='{sep}') if that separates labels"
            )


def _labels_column_layout(rows, column: str, separator: str, classes: list[str] | None):
    """Classes and a row parser for one labels column (``piano;voice``): listed → 1, others → 0."""
    names = [[x.strip() for x in values[column].split(separator) if x.strip()] for values in rows.values()]
    if not classes:
        _label_variants(names, column, separator)
    class_list = list(classes) if classes else sorted({n for row in names for n in row})
    if not class_list:
        raise ManifestError(f"column {column!r} holds no label at all; is separator={separator!r} right?")
    index = {c: i for i, c in enumerate(class_list)}

    def parse(values: dict):
        labels = np.zeros(len(class_list), np.float32)
        for name in (x.strip() for x in values[column].split(separator)):
            if not name:
                continue
            if name not in index:
                return "label not in the class list", f"label {name!r} is not one of the {len(class_list)} classes"
            labels[index[name]] = 1.0
        return labels, np.ones(len(class_list), bool)

    return class_list, parse


def _class_columns_layout(rows, header, path_col, split_col, class_columns, classes, csv_path):
    """Classes and a row parser for one 1/0/blank column per class (blank: unknown, masked)."""
    candidates = class_columns or [h for h in header if h not in (path_col, split_col)]
    missing = [c for c in candidates if c not in header]
    if missing:
        raise ManifestError(f"{csv_path}: class column(s) {missing} not in the header: {', '.join(header)}")
    known = POSITIVE | NEGATIVE | {""}
    ignored = [] if class_columns else [c for c in candidates if not any(v[c].lower() in known for v in rows.values())]
    class_list = [c for c in candidates if c not in ignored]
    if classes:
        unknown = [c for c in classes if c not in class_list]
        if unknown:
            raise ManifestError(f"{csv_path}: classes {unknown} have no column; class columns: {', '.join(class_list)}")
        class_list = list(classes)
    if not class_list:
        raise ManifestError(f"{csv_path}: no class column (each should hold 1, 0 or blank), nor a labels column")
    _refuse_variants(class_list, f"{csv_path}: class columns")
    if ignored:
        print(f"note: {csv_path.name}: columns {', '.join(ignored)} hold no 1/0/blank values: not classes, ignored")

    def parse(values: dict):
        labels = np.zeros(len(class_list), np.float32)
        mask = np.ones(len(class_list), bool)
        for i, c in enumerate(class_list):
            v = values[c].lower()
            if v in POSITIVE:
                labels[i] = 1.0
            elif v == "":
                mask[i] = False
            elif v not in NEGATIVE:
                return "bad label value", f"column {c}: {values[c]!r} is not 1, 0 or blank"
        return labels, mask

    return class_list, parse


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
