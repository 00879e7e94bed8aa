"""Predictions as a table on screen, JSON Lines or CSV (``eastmir predict``)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from eastmir.outputs import Outputs


def write_predictions(
    predictions: list[Any],
    fmt: str,
    out: str | Path | None,
    top: int = 3,
    curve: bool = False,
    outputs: Outputs | None = None,
) -> None:
    """``predictions``: :class:`eastmir.inference.predict.Prediction` objects, in order; written to ``out``
    under the output rules (:class:`eastmir.outputs.Outputs`), else to the screen."""
    text = {"table": _table, "jsonl": _jsonl, "csv": _csv}[fmt](predictions, top, curve)
    if out:
        (outputs or Outputs()).write(out, text)
    else:
        sys.stdout.write(text)


def _table(predictions: list[Any], top: int, curve: bool) -> str:
    lines = ["| file | predicted | top classes | windows |", "|---|---|---|---:|"]
    for p in predictions:
        best = ", ".join(f"{c} {v:.2f}" for c, v in p.top(top))
        lines.append(f"| {p.source} | {', '.join(p.predicted) or '—'} | {best} | {len(p.windows)} |")
    return "\n".join(lines) + "\n"


def _jsonl(predictions: list[Any], top: int, curve: bool) -> str:
    return "".join(json.dumps(p.as_dict(curve), allow_nan=False) + "\n" for p in predictions)


def _csv(predictions: list[Any], top: int, curve: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    classes = predictions[0].classes if predictions else []
    writer.writerow(["file", "predicted", *classes])
    for p in predictions:
        writer.writerow([p.source, ";".join(p.predicted), *[f"{v:.6f}" for v in p.probabilities]])
    return buffer.getvalue()
