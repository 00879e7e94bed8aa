"""A short ``fit`` of the OpenMIC recipe on a generated store: does the loader keep the accelerator busy?

Writes an OpenMIC-shaped folder dataset (10 s clips at 32 kHz, 20 classes, labels partly unknown), prepares it
(``eastmir data prepare folder``), and trains the OpenMIC Baseline on it (CP-ResNet 128 channels, batch 16,
waveforms in, the front end with the per-clip filterbank jitter, SpecAugment and mixup with a partner from the whole
training split on the device) for ``--epochs`` epochs through ``eastmir.pipeline.fit``, as ``eastmir fit`` runs it.
Printed: the seconds the store takes to build (once per dataset: every clip decoded and resampled, in
``data.num_workers`` processes), the seconds from ``fit`` to its first step after that, steps per second after the
first epoch, the accelerator's busy share over a window of steps (the time its kernels ran, from ``torch.profiler``;
on a GPU only), and the data-wait share ``fit`` records (the time the accelerator waited for batches).

Run: ``python benchmarks/gpu_fit.py`` (a GPU: about three minutes), ``--smoke`` (a few 2 s clips, a narrow student,
the CPU: ``make test`` runs it). ``--workers`` sets ``data.num_workers`` (default: the recipe's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # eastmir from this checkout if not installed

from eastmir import pipeline
from eastmir.config import load_config

CLASSES = [f"instrument{i:02d}" for i in range(20)]


def write_dataset(root: Path, clips: int, seconds: float, rate: int, seed: int = 0) -> None:
    """``clips`` WAV files of tones in noise, with a ``labels.csv`` of one column per class (1, 0 or blank)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    rows = ["path," + ",".join(CLASSES)]
    for i in range(clips):
        present = rng.random(len(CLASSES)) < 0.15
        audio = rng.standard_normal(len(t)) * 0.02
        for k in np.flatnonzero(present):
            audio += 0.1 * np.sin(2 * np.pi * (110.0 * (k + 1)) * t)
        sf.write(root / f"clip{i:05d}.wav", (audio / max(1.0, np.abs(audio).max())).astype(np.float32), rate)
        known = rng.random(len(CLASSES)) < 0.6
        cells = [("1" if p else "0") if k else "" for p, k in zip(present, known, strict=True)]
        rows.append(f"clip{i:05d}.wav," + ",".join(cells))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


class StepClock(Callback):
    """When training started, when its first step began, each step's end, and the accelerator's kernel time
    over steps ``window`` (a GPU's, from the profiler)."""

    def __init__(self, window: tuple[int, int]) -> None:
        self.window, self.ends, self.first_step, self.busy = window, [], None, None
        self.fit_start = time.perf_counter()
        self._profiler, self._window_start = None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step is None:
            self.first_step = time.perf_counter()
        step = trainer.global_step
        if step == self.window[0] and trainer.strategy.root_device.type == "cuda":
            from torch.profiler import ProfilerActivity, profile

            torch.cuda.synchronize()
            self._profiler = profile(activities=[ProfilerActivity.CUDA])
            self._profiler.__enter__()
            self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.ends.append((trainer.current_epoch, time.perf_counter()))
        if self._profiler is not None and trainer.global_step >= self.window[1]:
            torch.cuda.synchronize()
            wall = time.perf_counter() - self._window_start
            self._profiler.__exit__(None, None, None)
            kernels = [e for e in self._profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            self.busy = _merged_seconds([(e.time_range.start, e.time_range.end) for e in kernels]) / wall
            self._profiler = None


def _merged_seconds(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``intervals`` (microseconds in, seconds out): kernels that overlap count
    once."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, help="data.num_workers (default: the recipe's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="more config settings")
    parser.add_argument("--smoke", action="store_true", help="a few 2 s clips and a narrow student on the CPU")
    args = parser.parse_args(argv)
    seconds, rate = (2.0, 32000) if args.smoke else (10.0, 32000)
    clips = 40 if args.smoke else args.clips
    overrides = ["trainer.accelerator=cpu", "student.base_channels=8", "data.num_workers=0"] if args.smoke else []
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    device = "cpu" if args.smoke or not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "") + f", {device}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        started = time.perf_counter()
        write_dataset(root, clips, seconds, rate)
        pipeline.prepare("folder", root, {"csv": "labels.csv", "classes": CLASSES}, progress=False)
        print(
            f"{clips} clips of {seconds:g} s at {rate} Hz written and prepared in {time.perf_counter() - started:.0f} s"
        )
        config = load_config(
            "openmic/baseline",
            [
                "data.dataset=folder",
                f"data.root={root}",
                f"data.clip_seconds={seconds}",
                f"trainer.max_epochs={args.epochs}",
                "trainer.early_stop_patience=100",
                *overrides,
                *args.overrides,
            ],
            workdir=tmp,
        )
        started = time.perf_counter()
        pipeline.run_data(config, progress=False)  # the store's waveform entries, built once (decoded, resampled)
        built = time.perf_counter() - started
        steps_per_epoch = int(clips * 0.7) // config.data.batch_size
        clock = StepClock((max(2, steps_per_epoch // 3), max(3, 2 * steps_per_epoch // 3)))
        run = pipeline.fit(config, progress=False, callbacks=[clock])
        metrics = json.loads((run / "metrics.json").read_text())
    later = [t for epoch, t in clock.ends if epoch >= 1] or [t for _, t in clock.ends]
    rate_after = (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 else float("nan")
    busy = f"{clock.busy:.0%}" if clock.busy is not None else "n/a (CPU)"
    print(
        f"\n| data.num_workers | store built (s, once) | fit start to first step (s) | steps/s after epoch 1 | "
        f"accelerator busy | data wait |\n"
        f"|---:|---:|---:|---:|---:|---:|\n"
        f"| {config.data.num_workers} | {built:.1f} | {clock.first_step - clock.fit_start:.1f} | {rate_after:.2f} | "
        f"{busy} | {metrics['data_wait']:.1%} |"
    )


if __name__ == "__main__":
    main()
