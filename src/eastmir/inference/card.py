"""What rides along with an exported model: its metadata (classes, thresholds, rates, windows) and the model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eastmir.audio import preprocessing
from eastmir.inference.model import min_samples
from eastmir.inference.run import LoadedRun
from eastmir.inference.windows import HOP_FRACTION
from eastmir.version import __version__


def metadata(run: LoadedRun, quantize: str | None) -> dict[str, Any]:
    metrics = run.metrics or {}
    config = run.config
    return {
        "eastmir_version": __version__,
        "classes": run.classes,
        "task": config.task_kind,
        "thresholds": metrics.get("thresholds"),
        "sample_rate": config.frontend.sample_rate,
        "clip_seconds": run.clip_seconds,
        "hop_seconds": HOP_FRACTION * run.clip_seconds,
        "min_samples": min_samples(run),
        "frontend": asdict(config.frontend),
        "input": "waveform (batch, samples), float32, mono, at sample_rate, at least min_samples long",
        "output": "probabilities (batch, classes): sigmoid (multilabel) or softmax (single_label) per window of "
        "clip_seconds every hop_seconds, averaged (as eastmir predict does)",
        "system": config.system_label,
        "student": config.student.name,
        "teacher": config.teacher_label,
        "dataset": metrics.get("dataset") or config.data.dataset,
        "test_metrics": metrics.get("test"),
        "quantize": quantize,
    }


def model_card(run: LoadedRun, path: Path, fmt: str, quantize: str | None, notes: list[str]) -> Path:
    meta = metadata(run, quantize)
    test = meta["test_metrics"] or {}
    lines = [
        f"# {meta['system']}: {meta['student']} student" + (f", {meta['teacher']} teacher" if meta["teacher"] else ""),
        "",
        f"Exported by eastmir {__version__} from `{run.directory}` ({run.checkpoint.name}) as {fmt}"
        + (f", {quantize} static quantisation (calibrated on the run's training clips)" if quantize else "")
        + ".",
        "",
        "## Input and output",
        f"- input `waveform`: float32 `(batch, samples)`, mono, {meta['sample_rate']} Hz, any length of at least "
        f"{min_samples(run)} samples (one analysis window; shorter inputs give no meaningful answer)",
        f"- output `probabilities`: `(batch, {len(meta['classes'])})`, "
        + ("softmax (one class per clip)" if meta["task"] == "single_label" else "sigmoid per class (multi-label)")
        + f" of windows of {meta['clip_seconds']} s (the training clip) every {meta['hop_seconds']:g} s, the last "
        "ending with the input and a shorter input padded with silence, averaged: the scores of `eastmir predict`",
        f"- front end inside: log-mel {json.dumps(meta['frontend'])}",
        "",
        "## Preprocessing (outside the model)",
        f"- {preprocessing(meta['sample_rate'])}",
        "",
        "## Classes and thresholds",
        "",
        "| class | threshold |",
        "|---|---:|",
        *[
            f"| {c} | {(meta['thresholds'] or {}).get(c, 'arg-max' if meta['task'] == 'single_label' else 0.5)} |"
            for c in meta["classes"]
        ],
        "",
        "## Training and test",
        f"- data: {meta['dataset']} (`{run.config.data.root}`); system {meta['system']}, λ = {run.config.lam}",
        "- test split: " + (", ".join(f"{k} {v:.4f}" for k, v in test.items()) or "not measured"),
        *[f"- {n}" for n in notes],
        "",
    ]
    card = path.with_suffix(".md")
    card.write_text("\n".join(lines))
    return card
