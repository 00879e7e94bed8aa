"""The label table of a folder dataset: the CSV read as UTF-8 with its line numbers, its columns found, and
a parser for each row's labels in either layout (one labels column, or one 1/0/blank column per class)."""

from __future__ import annotations

import csv as csvlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eastmir.errors import ManifestError

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


RowLabels = Callable[[dict], "tuple[np.ndarray, np.ndarray] | tuple[str, str]"]


@dataclass
class LabelTable:
    """A label CSV: its ``header``, the rows with the header's length by line number (``rows``), the
    malformed lines (``malformed``: line → cells), and its path, split and labels columns."""

    path: Path
    header: list[str]
    rows: dict[int, dict[str, str]]
    malformed: dict[int, list[str]]
    path_column: str
    split_column: str | None
    labels_column: str | None
    lines: int  # data lines read (the denominator of the bad-row fraction)

    @classmethod
    def read(cls, path: Path, path_column: str | None, labels_column: str | None, split_column: str | None):
        """Read ``path``, refusing an empty table, repeated column names or no path column."""
        table = read_table(path)
        if not table:
            raise ManifestError(f"{path}: empty table")
        (_, header), body = table[0], table[1:]
        header = [h.strip() for h in header]
        repeated = sorted({h for h in header if header.count(h) > 1})
        if repeated:
            raise ManifestError(
                f"{path}: the header names column(s) {', '.join(map(repr, repeated))} more than once; a row's "
                "values would go to one of them silently: rename or remove the repeated column"
            )
        path_col = find_column(header, path_column, PATH_COLUMNS, "path", path)
        if path_col is None:
            raise ManifestError(
                f"{path}: no path column (looked for {', '.join(PATH_COLUMNS)}); name yours with "
                f"--set path_column=NAME; columns: {', '.join(header)}"
            )
        rows = {
            line: dict(zip(header, (c.strip() for c in cells))) for line, cells in body if len(cells) == len(header)
        }
        malformed = {line: cells for line, cells in body if len(cells) != len(header)}
        split_col = find_column(header, split_column, ("split",), "split", path)
        labels_col = find_column(header, labels_column, LABEL_COLUMNS, "labels", path)
        return cls(path, header, rows, malformed, path_col, split_col, labels_col, len(body))

    def layout(
        self, separator: str, class_columns: list[str] | None, classes: list[str] | None
    ) -> tuple[list[str], RowLabels]:
        """The class list and the parser of a row's ``(labels, mask)`` (or ``(kind, detail)`` of why not)."""
        if self.labels_column is not None:
            return labels_column_layout(self.rows, self.labels_column, separator, classes)
        return class_columns_layout(
            self.rows, self.header, self.path_column, self.split_column, class_columns, classes, self.path
        )


def find_column(
    header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, csv_path: Path
) -> str | None:
    lower = {h.lower(): h for h in header}
    if wanted is not None:
        if wanted not in header and wanted.lower() not in lower:
            raise ManifestError(f"{csv_path}: no {what} column {wanted!r}; columns: {', '.join(header)}")
        return wanted if wanted in header else lower[wanted.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def read_table(csv_path: Path) -> list[tuple[int, list[str]]]:
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


def refuse_variants(names: list[str], what: str) -> None:
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


def label_variants(names: list[list[str]], column: str, separator: str) -> None:
    """Stop when labels differ only in case or spacing, or hold another separator while this one never separates
    two labels (then the other is likely the separator meant): they would become classes."""
    refuse_variants([n for row in names for n in row], f"column {column!r}")
    if any(len(row) > 1 for row in names):
        return  # the separator does separate labels here: another mark inside a label is part of its name
    for sep in ",;|":
        glued = sorted({n for row in names for n in row if sep != separator and sep in n})
        if glued:
            raise ManifestError(
                f"column {column!r}: labels such as {glued[0]!r} hold {sep!r}, but separator is {separator!r}; "
                f"set separator={sep!r} (--set separator='{sep}') if that separates labels"
            )


def labels_column_layout(rows, column: str, separator: str, classes: list[str] | None):
    """Classes and a row parser for one labels column (``piano;voice``): listed → 1, others → 0."""
    names = [[x.strip() for x in values[column].split(separator) if x.strip()] for values in rows.values()]
    if not classes:
        label_variants(names, column, separator)
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


def class_columns_layout(rows, header, path_col, split_col, class_columns, classes, csv_path):
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
    refuse_variants(class_list, f"{csv_path}: class columns")
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
