"""The exclusion report: nothing a dataset adapter leaves out goes without a line.

Every clip or CSV row that ``prepare`` does not put into the manifest is
recorded with its file, its line in the source table (when there is one),
its clip id and why, in ``excluded.csv`` next to the manifest, and summarised
on screen by reason. When more than ``max_bad_fraction`` of the rows are
*bad* (not merely left out by design, like MagnaTagATune's unused folder),
``prepare`` stops instead of writing a manifest.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from eastmir.errors import ManifestError
from eastmir.fetch import atomic_writer

EXCLUDED_NAME = "excluded.csv"


@dataclass
class Exclusion:
    file: str
    line: int | None
    clip_id: str
    kind: str  # a short reason, for the summary: "missing file", "undecodable audio", …
    detail: str  # the full reason


@dataclass
class Exclusions:
    """Collects what ``prepare`` leaves out; :meth:`finish` writes the report and applies the bad-row limit."""

    root: Path
    rows: list[Exclusion] = field(default_factory=list)

    def add(
        self, file: str | Path, line: int | None, clip_id: str, kind: str, detail: str = "", bad: bool = True
    ) -> None:
        self.rows.append(Exclusion(str(file), line, clip_id, kind if bad else f"{kind} (by design)", detail or kind))

    @property
    def bad(self) -> list[Exclusion]:
        return [r for r in self.rows if not r.kind.endswith("(by design)")]

    def write(self) -> Path:
        path = self.root / EXCLUDED_NAME
        with atomic_writer(path, text=True) as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "line", "clip_id", "reason", "detail"])
            for r in sorted(self.rows, key=lambda r: (r.line is None, r.line or 0, r.file)):
                writer.writerow([r.file, "" if r.line is None else r.line, r.clip_id, r.kind, r.detail])
        return path

    def summary(self) -> str:
        counts = Counter(r.kind for r in self.rows)
        return ", ".join(f"{kind}: {n}" for kind, n in counts.most_common())

    def finish(self, total: int, max_bad_fraction: float = 0.05, progress: bool = True) -> None:
        """Write ``excluded.csv`` (or remove a stale one), say what was left out, stop if too much was bad."""
        path = self.root / EXCLUDED_NAME
        if not self.rows:
            path.unlink(missing_ok=True)
            return
        self.write()
        if progress or self.bad:
            print(f"left out {len(self.rows)} of {total} row(s) ({self.summary()}); see {path}")
        bad = len(self.bad)
        if total and bad / total > max_bad_fraction:
            first = "; ".join(f"{r.file}: {r.detail}" for r in self.bad[:3])
            raise ManifestError(
                f"{self.root}: {bad} of {total} rows ({bad / total:.0%}) cannot be used, more than max_bad_fraction "
                f"= {max_bad_fraction:g} ({self.summary()}); see {path}. First: {first}. Fix them, or raise "
                "max_bad_fraction (--set max_bad_fraction=0.2) to leave them out"
            )
