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


def window_inputs(meta: dict[str, Any], window: dict[str, Any]) -> list[str]:
    """The card's input lines for a window model (:class:`~eastmir.inference.window_model.WindowPlan.card`)."""
    p, half = window["preemphasis"], window["n_fft"] // 2
    return [
        f"- input `segment` (first argument): float32 `(1, {window['segment_samples']})`, the samples one window "
        f"is computed from. Take the recording (mono, {meta['sample_rate']} Hz)"
        + (f", pre-emphasise it (`y[n] = x[n+1] - {p}·x[n]`, one sample shorter)" if p else "")
        + f", pad it with {half} samples on each side ({window['padding']}); it has `F = len // "
        f"{window['frame_hop_samples']} + 1` frames. A window starting at frame `s` is the padded samples "
        f"`[s·{window['frame_hop_samples']}, s·{window['frame_hop_samples']} + {window['segment_samples']})`, "
        "zeros past the end. Windows start at frames `0, h, 2h, …` "
        f"(`h = {window['hop_frames']}`) while they fit in `F`, and a last one ends at `F` unless one already does; "
        f"a recording of `F ≤ {window['window_frames']}` frames is one window from 0",
        f"- input `valid` (second argument): float32 `(1,)`, the window's real frames: {window['window_frames']}, "
        "or `F` for a recording shorter than one window (the rest are scored as silence, as `eastmir predict` pads)",
        f"- output `probabilities`: `(1, {len(meta['classes'])})` for that window, "
        + ("softmax" if meta["task"] == "single_label" else "sigmoid per class")
        + "; the recording's score is the mean over its windows: the scores of `eastmir predict` "
        "(the parity check below drives the file exactly so)",
        f"- front end inside (the spectrum by matrix products): log-mel {json.dumps(meta['frontend'])}",
    ]


def model_card(
    run: LoadedRun,
    path: Path,
    fmt: str,
    quantize: str | None,
    notes: list[str],
    window: dict[str, Any] | None = None,
) -> Path:
    """``path``'s model card (``<path>.md``); ``window``: the plan of a window model (LiteRT), whose inputs it
    describes instead of a whole waveform's, and whose metadata it holds (the file has none of eastmir's)."""
    meta = metadata(run, quantize)
    test = meta["test_metrics"] or {}
    whole = [
        f"- input `waveform`: float32 `(batch, samples)`, mono, {meta['sample_rate']} Hz, any length of at least "
        f"{min_samples(run)} samples (one analysis window; shorter inputs give no meaningful answer)",
        f"- output `probabilities`: `(batch, {len(meta['classes'])})`, "
        + ("softmax (one class per clip)" if meta["task"] == "single_label" else "sigmoid per class (multi-label)")
        + f" of windows of {meta['clip_seconds']} s (the training clip) every {meta['hop_seconds']:g} s, the last "
        "ending with the input and a shorter input padded with silence, averaged: the scores of `eastmir predict`",
        f"- front end inside: log-mel {json.dumps(meta['frontend'])}",
    ]
    lines = [
        f"# {meta['system']}: {meta['student']} student" + (f", {meta['teacher']} teacher" if meta["teacher"] else ""),
        "",
        f"Exported by eastmir {__version__} from `{run.directory}` ({run.checkpoint.name}) as {fmt}"
        + (
            f", {quantize} static quantisation (calibrated on "
            + (
                f"{len(run.calibration)} recording(s) given with --calibrate-on)"
                if run.calibration
                else "the run's training clips)"
            )
            if quantize == "int8"
            else (f", computed in {quantize}" if quantize else "")
        )
        + ".",
        "",
        "## Input and output",
        *(whole if window is None else window_inputs(meta, window)),
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
    if window is not None:
        lines += ["## Metadata", "", "```json", json.dumps({**meta, "window": window}, indent=2), "```", ""]
    card = path.with_suffix(".md")
    card.write_text("\n".join(lines))
    return card
