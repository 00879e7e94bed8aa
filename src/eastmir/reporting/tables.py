"""Table-1-style results tables from run directories' ``metrics.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

TITLES = {"mAP": "mAP", "roc_auc": "ROC-AUC", "f1": "F1", "accuracy": "Accuracy"}


def read_runs(run_dirs: list[str | Path]) -> list[dict]:
    rows = []
    for d in run_dirs:
        path = Path(d) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics; has `eastmir fit` finished for this run?")
        rows.append(json.loads(path.read_text()))
    return rows


def metric_columns(rows: list[dict]) -> list[str]:
    """The test metrics present in any row, in a fixed order."""
    present = {k for r in rows for k in r["test"]}
    return [k for k in TITLES if k in present]


def markdown_table(rows: list[dict]) -> str:
    """One row per system: System | Student | Teacher | metrics of the test split."""
    cols = metric_columns(rows)
    head = ["System", "Student", "Teacher"] + [TITLES[k] for k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(cols)) + "|"]
    for r in rows:
        vals = [f"{r['test'][k]:.3f}" if k in r["test"] else "—" for k in cols]
        lines.append(
            "| " + " | ".join([r.get("system", r["name"]), r.get("student", ""), r.get("teacher") or "—"] + vals) + " |"
        )
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> None:
    cols = metric_columns(rows)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "student", "teacher"] + cols + ["epochs", "steps", "wall_seconds"])
        for r in rows:
            w.writerow(
                [r.get("system"), r.get("student"), r.get("teacher") or ""]
                + [r["test"].get(k) for k in cols]
                + [r.get("epochs"), r.get("steps"), r.get("wall_seconds")]
            )
