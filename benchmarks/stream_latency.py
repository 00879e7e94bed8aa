"""Streaming inference: the latency a window adds and the memory a stream holds, for several block sizes, against
``predict`` on the whole recording once it has ended.

Trains a small run first (the ``folder`` recipe's Mobile FCN, one epoch on generated clips: the weights do not
matter for speed), then feeds a ``--seconds`` recording at the run's rate (16 kHz) to ``student.stream()`` in
blocks of 160, 1 000 and 16 000 samples (10, 62.5 and 1 000 ms), round by round with ``student.predict`` on
the whole recording. Printed per contender: the median time of a block that completes no window and of one that
completes a window (the latency the window's score adds after its last sample arrives), the real-time factor
(seconds of audio per second of computing), the most bytes the stream held between blocks, and the largest
difference from ``predict``'s probabilities. The first line names torch and the pinned threads.

Run: ``python benchmarks/stream_latency.py`` (60 s of audio, 5 rounds), ``--smoke`` (4 s, 1 round: ``make test``
runs it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # eastmir from this checkout if not installed

from eastmir import load_student, pipeline
from eastmir.config import load_config
from gpu_fit import CLASSES, write_dataset
from timing import machine, round_by_round

BLOCKS = (160, 1000, 16000)


def streamed(student, audio: np.ndarray, block: int, record: dict) -> float:
    """Feed ``audio`` in blocks; records each block's seconds (with and without a window completed), the most
    bytes held and the probabilities; returns the total seconds."""
    quiet, completing, held = [], [], 0
    start = time.perf_counter()
    stream = student.stream()
    for at in range(0, len(audio), block):
        began = time.perf_counter()
        done = stream.feed(audio[at : at + block])
        (completing if done else quiet).append(time.perf_counter() - began)
        held = max(held, stream.held_bytes)
    result = stream.finish()
    total = time.perf_counter() - start
    record.setdefault("quiet", []).extend(quiet)
    record.setdefault("completing", []).extend(completing)
    record["held"] = max(record.get("held", 0), held)
    record["probabilities"] = result.probabilities
    return total


def whole(student, audio: np.ndarray, record: dict) -> float:
    start = time.perf_counter()
    record["probabilities"] = student.predict(audio, student.sample_rate).probabilities
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a plugin's audio thread: 1)")
    parser.add_argument("--smoke", action="store_true", help="4 s of audio, 1 round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.rounds = 4.0, 1
    print(machine(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "data", 40, 2.0, 16000)
        pipeline.prepare("folder", tmp / "data", {"csv": "labels.csv", "classes": CLASSES}, progress=False)
        overrides = [f"data.root={tmp / 'data'}", "trainer.max_epochs=1", "trainer.min_steps=0", "name=tagger"]
        run = pipeline.fit(load_config("folder/baseline", overrides, workdir=tmp), progress=False)
        student = load_student(run)
    rate = student.sample_rate
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(round(args.seconds * rate)) * 0.05).astype(np.float32)
    records: dict[str, dict] = {name: {} for name in ("predict, whole", *(f"stream, {b}" for b in BLOCKS))}
    contenders = {"predict, whole": lambda: whole(student, audio, records["predict, whole"])}
    for block in BLOCKS:
        contenders[f"stream, {block}"] = lambda b=block: streamed(student, audio, b, records[f"stream, {b}"])
    whole(student, audio[: 4 * rate], {})  # warm-up
    totals = round_by_round(contenders, args.rounds)
    reference = records["predict, whole"]["probabilities"]
    print(
        f"\n{args.seconds:g} s of audio at {rate} Hz, {args.rounds} round(s), windows of {student.clip_seconds:g} s\n\n"
        "| contender | block (ms) | block without a window (ms, median) | block completing a window (ms, median) "
        "| real-time factor | held (KiB) | largest difference |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for name, record in records.items():
        block = name.split(", ")[1]
        ms = "—" if block == "whole" else f"{int(block) / rate * 1000:g}"
        quiet = f"{statistics.median(record['quiet']) * 1000:.3f}" if record.get("quiet") else "—"
        completing = f"{statistics.median(record['completing']) * 1000:.2f}" if record.get("completing") else "—"
        factor = args.seconds / statistics.median(totals[name])
        held = f"{record['held'] / 1024:.0f}" if "held" in record else "—"
        worst = float(np.abs(record["probabilities"] - reference).max())
        print(f"| {name} | {ms} | {quiet} | {completing} | {factor:.0f}× | {held} | {worst:.1e} |")


if __name__ == "__main__":
    main()
