"""The report's figures, drawn with matplotlib (the Agg backend: no display needed), saved as PNG.

- :func:`bars`: the test metric of every system, grouped by teacher, with
  the seeds' standard deviation as error bars (none for a single seed) and
  the Baseline as a red dashed line (the compression paper's Figure 3); the
  axis starts at 0 and the legend stands beside the plot, off the bars.
- :func:`fractions`: the test metric over the fraction of training data, one
  line per system and teacher (the ISMIR paper's Figure 2).
- :func:`per_class`: each class's test average precision per system.
- :func:`curves`: validation score and training loss over epochs, from each
  run's CSV log.
Each returns the file it wrote, or ``None`` when the runs give nothing to draw.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from eastmir.outputs import Outputs
from eastmir.reporting.grid import NO_TEACHER, TITLES, Cell, RunRecord, mean_std
from eastmir.rundir import RunDirectory

DPI = 120


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    plt.close(fig)
    # never a 0-byte or half-written PNG; into the report's folder, whose files write_report checked first
    Outputs(overwrite=True).write(path, buffer.getvalue(), "figure")
    return path


def bars(cs: Sequence[Cell], metric: str, path: Path) -> Path | None:
    fig = bar_figure(cs, metric)
    return _save(fig, path) if fig is not None else None


def _spread(c: Cell, metric: str) -> float:
    """The error bar of a cell: the seeds' standard deviation, NaN (none drawn) for a single seed."""
    return c.metric(metric)[1] if len(c.runs) > 1 else float("nan")


def bar_figure(cs: Sequence[Cell], metric: str):
    """The figure :func:`bars` saves (``None`` when there is nothing to draw)."""
    full = [c for c in cs if c.fraction == max(x.fraction for x in cs) and c.metric(metric)]
    baseline = [c for c in full if c.teacher == NO_TEACHER]
    taught = [c for c in full if c.teacher != NO_TEACHER]
    if not taught and not baseline:
        return None
    teachers = list(dict.fromkeys(c.teacher for c in taught)) or [NO_TEACHER]
    systems = list(dict.fromkeys(c.system for c in taught))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(teachers) * max(1, len(systems)) / 2), 3.6))
    width = 0.8 / max(1, len(systems))
    colours = plt.get_cmap("tab10")
    for i, system in enumerate(systems):
        xs, ys, es = [], [], []
        for j, teacher in enumerate(teachers):
            c = next((c for c in taught if c.system == system and c.teacher == teacher), None)
            if c:
                xs.append(j + (i - (len(systems) - 1) / 2) * width)
                ys.append(c.metric(metric)[0])
                es.append(_spread(c, metric))
        hatch = "//" if any(c.is_teacher_row for c in taught if c.system == system) else None
        ax.bar(xs, ys, width, label=system, color=colours(i % 10), hatch=hatch, alpha=0.85)
        if any(e == e for e in es):  # (NaN: a single seed, no bar)
            ax.errorbar(xs, ys, yerr=es, fmt="none", ecolor="black", capsize=3, linewidth=1)
    if baseline:
        mean, _ = baseline[0].metric(metric)
        ax.axhline(mean, color="red", linestyle="--", linewidth=1.5, label=f"{baseline[0].system} ({mean:.3f})")
    high = max(c.metric(metric)[0] + (_spread(c, metric) if len(c.runs) > 1 else 0.0) for c in full)
    ax.set_ylim(0.0, min(1.0, high * 1.08) if high > 0 else 1.0)  # from 0: no cut axis that inflates a gap
    ax.set_xticks(range(len(teachers)), teachers)
    ax.set_ylabel(f"test {TITLES.get(metric, metric)}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # off the bars
    ax.grid(axis="y", alpha=0.3)
    return fig


def fractions(cs: Sequence[Cell], metric: str, path: Path) -> Path | None:
    if len({c.fraction for c in cs}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for system, teacher in dict.fromkeys((c.system, c.teacher) for c in cs):
        line = sorted(
            (c for c in cs if (c.system, c.teacher) == (system, teacher) and c.metric(metric)), key=lambda c: c.fraction
        )
        if not line:
            continue
        xs = [100 * c.fraction for c in line]
        ys = [c.metric(metric)[0] for c in line]
        es = [_spread(c, metric) for c in line]
        label = system if teacher == NO_TEACHER else f"{system} ({teacher})"
        style = "--" if teacher == NO_TEACHER else "-"
        ax.errorbar(xs, ys, yerr=es, marker="o", linestyle=style, capsize=3, label=label)  # NaN: no bar
    ax.set_xlabel("training data (%)")
    ax.set_ylabel(f"test {TITLES.get(metric, metric)}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def per_class(cs: Sequence[Cell], path: Path) -> Path | None:
    full = [c for c in cs if c.fraction == max(x.fraction for x in cs) and any(r.per_class_ap for r in c.runs)]
    if not full:
        return None
    classes = list(dict.fromkeys(k for c in full for r in c.runs for k in (r.per_class_ap or {})))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes) * max(1, len(full)) / 2), 3.8))
    width = 0.8 / len(full)
    for i, c in enumerate(full):
        ys = []
        for k in classes:
            values = [r.per_class_ap[k] for r in c.runs if r.per_class_ap and r.per_class_ap.get(k) is not None]
            ys.append(mean_std(values)[0] if values else 0.0)
        label = c.system if c.teacher == NO_TEACHER else f"{c.system} ({c.teacher})"
        ax.bar([j + (i - (len(full) - 1) / 2) * width for j in range(len(classes))], ys, width, label=label)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test average precision")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _log(run: RunRecord) -> tuple[list[int], list[float], list[int], list[float], str]:
    """Per epoch: validation score (the run's monitor) and training loss, from ``logs/version_0/metrics.csv``."""
    path = RunDirectory(run.run_dir).log_file
    val_x, val_y, loss_x, loss_y, name = [], [], [], [], "val"
    if not path.is_file():
        return val_x, val_y, loss_x, loss_y, name
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            epoch = row.get("epoch")
            if not epoch:
                continue
            for key in ("val_mAP", "val_accuracy"):
                if row.get(key):
                    val_x.append(int(float(epoch)) + 1)
                    val_y.append(float(row[key]))
                    name = key
            if row.get("train_loss_epoch"):
                loss_x.append(int(float(epoch)) + 1)
                loss_y.append(float(row["train_loss_epoch"]))
    return val_x, val_y, loss_x, loss_y, name


def curves(rows: Sequence[RunRecord], path: Path, limit: int = 12) -> Path | None:
    logged = [(r, _log(r)) for r in rows]
    logged = [(r, log) for r, log in logged if log[0]][:limit]
    if not logged:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r, (vx, vy, lx, ly, name) in logged:
        label = f"{r.system}" + ("" if r.teacher == NO_TEACHER else f" ({r.teacher})") + f" s{r.seed}"
        left.plot(vx, vy, label=label)
        if lx:
            right.plot(lx, ly, label=label)
        left.set_ylabel(name.replace("_", " "))
    left.set_xlabel("epoch")
    right.set_xlabel("epoch")
    right.set_ylabel("training loss")
    left.legend(fontsize=6)
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    return _save(fig, path)
