"""Table-1-style grids: systems × teachers, mean ± std over seeds, best per teacher in bold.

:func:`load_rows` reads every run directory (``metrics.json`` and the
resolved ``config.yaml``) into one flat record per run; :func:`cells`
groups the records of one system, teacher and data fraction (its seeds);
:func:`grid_markdown`, :func:`grid_latex` and :func:`grid_csv` lay them out.
The Baseline (no teacher) has its own column; a system whose student is the
teacher's linear probe (TeacherLR) is the teacher row and is never bold.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eastmir.config import teacher_label
from eastmir.fetch import atomic_write
from eastmir.registry import STUDENTS
from eastmir.reporting.tables import stalled_words
from eastmir.rundir import RunDirectory, flatten

NO_TEACHER = "—"
TITLES = {"mAP": "mAP", "roc_auc": "ROC-AUC", "f1": "F1", "accuracy": "Accuracy"}


# settings that tell the runs of one grid cell apart without changing what the cell measures: the run's name and
# folders, its seed (the cell's seeds), the KD head's path (one per seed), and where it ran
NOT_A_SETTING = (
    "name",
    "seed",
    "system",
    "workdir",
    "cache_dir",
    "requires",
    "task",
    "threads",
    "config_version",
    "data.subset_seed",
    "data.train_fraction",
    "data.num_workers",
    "distillation.kd.teacher_run",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.log_every_n_steps",
    "trainer.compile",
    "trainer.cudnn_benchmark",
)


@dataclass
class RunRecord:
    run_dir: Path
    system: str  # how tables name the system, with the settings that set this run apart from others of its cell
    student: str
    teacher: str
    fraction: float
    seed: int
    test: dict[str, float]
    validation: float | None
    per_class_ap: dict[str, float | None] | None
    settings: dict[str, Any] = field(default_factory=dict)  # the run's config, flattened, less NOT_A_SETTING
    base_system: str = ""  # the system's own name (``Baseline``), without the settings
    variant: str = ""  # the settings that set it apart (``trainer.max_epochs=8``), or ""


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    flat = flatten(config)
    return {
        k: v
        for k, v in flat.items()
        if k not in NOT_A_SETTING and not k.startswith("teacher.") and not k.startswith("teacher")
    }


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def name_variants(rows: list[RunRecord]) -> None:
    """Runs of one system, teacher and data fraction that differ in any setting are different cells: each
    run's ``system`` gets the settings that set it apart (``TeacherLR [trainer.max_epochs=8]``)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in rows:
        r.base_system = r.base_system or r.system
        groups.setdefault((r.base_system, r.teacher, r.fraction), []).append(r)
    for group in groups.values():
        keys = sorted({k for r in group for k in r.settings})
        differing = [k for k in keys if len({json.dumps(r.settings.get(k), default=str) for r in group}) > 1]
        for r in group:
            r.variant = ", ".join(f"{k}={_short(r.settings.get(k))}" for k in differing)
            r.system = f"{r.base_system} [{r.variant}]" if r.variant else r.base_system


def one_per_seed(rows: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """Each cell's runs with one run per seed (the first by run directory), and a line naming every other run
    of a cell and seed: two runs of one seed are a duplicate, never averaged as two seeds."""
    kept: dict[tuple, RunRecord] = {}
    lines = []
    for r in sorted(rows, key=lambda r: str(r.run_dir)):
        key = (r.system, r.teacher, r.fraction, r.seed)
        if key in kept:
            lines.append(
                f"{r.run_dir}: a second run of {r.system} ({r.teacher}, {r.fraction:.0%}, seed {r.seed}) besides "
                f"{kept[key].run_dir}, with the same settings: a duplicate, left out (the seed counts once)"
            )
            continue
        kept[key] = r
    return [r for r in rows if kept.get((r.system, r.teacher, r.fraction, r.seed)) is r], lines


def load_rows(run_dirs: Sequence[str | Path]) -> tuple[list[RunRecord], list[str]]:
    """The finished runs among ``run_dirs`` (one per cell and seed; cells told apart by every setting that
    differs, :func:`name_variants`) and a line for each directory left out (unfinished, failed, duplicate)."""
    rows, skipped = [], []
    for d in map(Path, run_dirs):
        run = RunDirectory(d)
        if not run.finished or not run.config_file.is_file():
            skipped.append(f"{d}: not a finished run (no metrics.json), left out")
            continue
        metrics = run.read_metrics()
        if metrics.get("stalled"):
            skipped.append(f"{d}: {stalled_words(metrics)}: it did not learn, left out of means and comparisons")
            continue
        config = yaml.safe_load(run.config_file.read_text()) or {}
        validation = next((v for k, v in metrics.items() if k.startswith("best_val_") and v is not None), None)
        rows.append(
            RunRecord(
                d,
                metrics.get("system") or metrics["name"],
                metrics.get("student", ""),
                teacher_label(config.get("teacher")) or NO_TEACHER,
                float((config.get("data") or {}).get("train_fraction", 1.0)),
                int(config.get("seed", 0)),
                metrics["test"],
                validation,
                metrics.get("test_per_class_ap"),
                _settings(config),
            )
        )
    name_variants(rows)
    rows, duplicates = one_per_seed(rows)
    return rows, skipped + duplicates


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    return mean, (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


@dataclass
class Cell:
    system: str
    teacher: str
    fraction: float
    student: str
    runs: list[RunRecord] = field(default_factory=list)

    def metric(self, name: str) -> tuple[float, float] | None:
        values = [r.test[name] for r in self.runs if name in r.test and not math.isnan(r.test[name])]
        return mean_std(values) if values else None

    @property
    def is_teacher_row(self) -> bool:
        """Whether the cell's runs are a probe on the teacher's embedding (TeacherLR), by the student's class."""
        return self.student in STUDENTS and bool(STUDENTS.get(self.student).is_probe)


def cells(rows: Sequence[RunRecord]) -> list[Cell]:
    """One cell per (system, teacher, fraction), in the order they first appear; Baseline rows first."""
    out: dict[tuple, Cell] = {}
    for r in rows:
        out.setdefault((r.system, r.teacher, r.fraction), Cell(r.system, r.teacher, r.fraction, r.student)).runs.append(
            r
        )
    return sorted(out.values(), key=lambda c: (c.teacher != NO_TEACHER, 0))


def metrics_of(rows: Sequence[RunRecord]) -> list[str]:
    present = {k for r in rows for k in r.test}
    return [k for k in TITLES if k in present]


def _layout(cs: Sequence[Cell]) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    systems = list(dict.fromkeys(c.system for c in cs))
    teachers = list(dict.fromkeys(c.teacher for c in cs))
    if NO_TEACHER in teachers:
        teachers.remove(NO_TEACHER)
        teachers.insert(0, NO_TEACHER)
    return systems, teachers, {(c.system, c.teacher): c for c in cs}


def _best(cs: Sequence[Cell], metric: str) -> set[tuple[str, str]]:
    """The (system, teacher) cells with the best mean per teacher column (teacher rows excluded)."""
    best: dict[str, float] = {}
    for c in cs:
        value = c.metric(metric)
        if value and not c.is_teacher_row and c.teacher != NO_TEACHER:
            best[c.teacher] = max(best.get(c.teacher, -math.inf), value[0])
    return {
        (c.system, c.teacher)
        for c in cs
        if c.teacher in best and not c.is_teacher_row and (c.metric(metric) or (None,))[0] == best[c.teacher]
    }


def _text(value: tuple[float, float] | None, seeds: int) -> str:
    """``mean ± std (n seeds)``; one seed has no spread to show: ``mean (1 seed)``."""
    if value is None:
        return "—"
    return f"{value[0]:.3f} ± {value[1]:.3f} ({seeds} seeds)" if seeds > 1 else f"{value[0]:.3f} (1 seed)"


def grid_markdown(cs: Sequence[Cell], metric: str) -> str:
    """Systems × teachers for one metric; the best student per teacher in bold."""
    systems, teachers, at = _layout(cs)
    bold = _best(cs, metric)
    lines = [
        "| system | " + " | ".join("no teacher" if t == NO_TEACHER else t for t in teachers) + " |",
        "|---|" + "|".join(["---:"] * len(teachers)) + "|",
    ]
    for s in systems:
        row = []
        for t in teachers:
            c = at.get((s, t))
            text = _text(c.metric(metric), len(c.runs)) if c else ""
            row.append(f"**{text}**" if (s, t) in bold else text)
        lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_markdown(cs: Sequence[Cell], metrics: Sequence[str]) -> str:
    """One row per system, teacher and data fraction: every metric's mean ± std over the seeds."""
    lines = [
        "| System | Teacher | data | seeds | " + " | ".join(TITLES.get(m, m) for m in metrics) + " |",
        "|---|---|---:|---:|" + "---:|" * len(metrics),
    ]
    for c in cs:
        values = [c.metric(m) for m in metrics]
        n = len(c.runs)
        texts = ["—" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}" if n > 1 else f"{v[0]:.3f}" for v in values]
        lines.append(f"| {c.system} | {c.teacher} | {c.fraction:.0%} | {n} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    return text.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("#", r"\#")


def grid_latex(cs: Sequence[Cell], metric: str, caption: str = "") -> str:
    """The grid as a booktabs ``tabular`` (``\\usepackage{booktabs}``), best per column in ``\\textbf``."""
    systems, teachers, at = _layout(cs)
    bold = _best(cs, metric)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * len(teachers) + "}",
        r"\toprule",
        "System & " + " & ".join(_latex_escape("no teacher" if t == NO_TEACHER else t) for t in teachers) + r" \\",
        r"\midrule",
    ]
    for s in systems:
        row = []
        for t in teachers:
            c = at.get((s, t))
            text = _text(c.metric(metric), len(c.runs)).replace("±", r"$\pm$") if c else ""
            row.append(rf"\textbf{{{text}}}" if (s, t) in bold else text)
        lines.append(_latex_escape(s) + " & " + " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def grid_csv(cs: Sequence[Cell], metrics: Sequence[str], path: str | Path) -> None:
    """:func:`grid_csv_text` written to ``path``."""
    atomic_write(path, grid_csv_text(cs, metrics))


def grid_csv_text(cs: Sequence[Cell], metrics: Sequence[str]) -> str:
    """One line per cell: system, teacher, fraction, seeds, then mean and std of every metric."""
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(
        ["system", "teacher", "train_fraction", "seeds", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    )
    for c in cs:
        values = []
        for m in metrics:
            v = c.metric(m)
            values += [f"{v[0]:.6f}", f"{v[1]:.6f}"] if v else ["", ""]
        w.writerow([c.system, c.teacher, f"{c.fraction:g}", len(c.runs), *values])
    return fh.getvalue()
