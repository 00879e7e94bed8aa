"""Table-1-style results tables from run directories' ``metrics.json``.

A run that has not finished (no ``metrics.json``) still gets its row, marked
``unfinished`` with the last epoch its logs reached, rather than stopping the
report; a folder that is not a run is marked too.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

from eastmir.config import teacher_label
from eastmir.outputs import Outputs
from eastmir.rundir import RunDirectory

TITLES = {"mAP": "mAP", "roc_auc": "ROC-AUC", "f1": "F1", "accuracy": "Accuracy"}


def _unfinished(run: RunDirectory) -> dict:
    run_dir = run.path
    row: dict = {"name": run_dir.name, "test": {}}
    config_file = run.config_file
    if not config_file.is_file():
        row["status"] = "not a run directory"
        return row
    config = yaml.safe_load(config_file.read_text()) or {}
    teacher = config.get("teacher") or {}
    row.update(
        name=config.get("name", run_dir.name),
        system=config.get("system") or config.get("name", run_dir.name),
        student=(config.get("student") or {}).get("name", ""),
        teacher=teacher_label(teacher),
    )
    epochs = []
    log = run.log_file
    if log.is_file():
        with open(log, newline="") as fh:
            epochs = [int(float(r["epoch"])) for r in csv.DictReader(fh) if r.get("epoch") and r.get("val_loss")]
    max_epochs = (config.get("trainer") or {}).get("max_epochs")
    reached = f"epoch {max(epochs) + 1}" + (f" of {max_epochs}" if max_epochs else "") if epochs else "no epoch done"
    failure = run.read_failure()
    row["status"] = f"failed: {failure}" if failure else f"unfinished: {reached}"
    return row


def read_runs(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run directory: its ``metrics.json``, or a row marked with its status."""
    rows = []
    for d in run_dirs:
        run = RunDirectory(d)
        row = run.read_metrics() if run.finished else _unfinished(run)
        if row.get("stalled"):
            row["status"] = stalled_words(row)
        rows.append(row)
    return rows


def stalled_words(metrics: dict) -> str:
    """``stalled: best validation accuracy 0.104 at chance 0.100``."""
    best = next(((k, v) for k, v in metrics.items() if k.startswith("best_val_") and v is not None), None)
    score = f"best validation {best[0].removeprefix('best_val_')} {best[1]:.3f} " if best else ""
    return f"stalled: {score}at chance {metrics.get('chance', float('nan')):.3f}"


def metric_columns(rows: list[dict]) -> list[str]:
    """The test metrics present in any row, in a fixed order."""
    present = {k for r in rows for k in r["test"]}
    return [k for k in TITLES if k in present]


def markdown_table(rows: list[dict]) -> str:
    """One row per run (one seed each): System | Student | Teacher | metrics of the test split | Run (its name)."""
    cols = metric_columns(rows)
    head = ["System", "Student", "Teacher"] + [TITLES[k] for k in cols] + ["Run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(cols) + ["---"]) + "|"]
    for r in rows:
        vals = [f"{r['test'][k]:.3f}" if k in r["test"] else "—" for k in cols]
        label = r.get("system", r["name"]) + (f" ({r['status']})" if r.get("status") else "")
        cells = [label, r.get("student", ""), r.get("teacher") or "—", *vals, f"`{r['name']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path, outputs: Outputs | None = None) -> None:
    cols = metric_columns(rows)
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["system", "student", "teacher", *cols, "epochs", "steps", "wall_seconds", "status"])
    for r in rows:
        w.writerow(
            [r.get("system", r["name"]), r.get("student"), r.get("teacher") or ""]
            + [r["test"].get(k) for k in cols]
            + [r.get("epochs"), r.get("steps"), r.get("wall_seconds"), r.get("status", "finished")]
        )
    (outputs or Outputs()).write(path, fh.getvalue(), "--csv")
