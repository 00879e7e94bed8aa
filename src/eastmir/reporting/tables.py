"""Table-1-style results tables from run directories' ``metrics.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

COLUMNS = (("mAP", "mAP"), ("roc_auc", "ROC-AUC"), ("f1", "F1"))


def read_runs(run_dirs: list[str | Path]) -> list[dict]:
    rows = []
    for d in run_dirs:
        path = Path(d) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics; has `eastmir fit` finished for this run?")
        rows.append(json.loads(path.read_text()))
    return rows


def markdown_table(rows: list[dict]) -> str:
    """One row per system: System | Student | Teacher | mAP | ROC-AUC | F1 (test split)."""
    head = ["System", "Student", "Teacher"] + [title for _, title in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS)) + "|"]
    for r in rows:
        vals = [f"{r['test'].get(k, float('nan')):.3f}" for k, _ in COLUMNS]
        lines.append("| " + " | ".join([r.get("system", r["name"]), r.get("student", ""), r.get("teacher") or "—"] + vals) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "student", "teacher"] + [k for k, _ in COLUMNS] + ["best_val_mAP", "epochs", "wall_seconds"])
        for r in rows:
            w.writerow([r.get("system"), r.get("student"), r.get("teacher") or ""] + [r["test"].get(k) for k, _ in COLUMNS]
                       + [r.get("best_val_mAP"), r.get("epochs"), r.get("wall_seconds")])
