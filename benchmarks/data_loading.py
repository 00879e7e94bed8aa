"""One training epoch's data loading at OpenMIC settings: from the store vs decoding every item.

Both paths feed the same training-time work: batches of 32 log-mels of
128 mels × 1001 frames (10 s at 32 kHz, hop 320), mixup (α 0.3) and
SpecAugment (48 / 192) applied to every batch, a DataLoader with 2 worker
processes, shuffled.

- **store**: our data module (``ClipDataModule``) reading the checksummed
  log-mel entries that ``eastmir features`` wrote once;
- **decode at the model's rate** (the baseline: the authors' pipeline): the
  audio was resampled once, offline, to 32 kHz mono OGG, and their dataset
  class decodes it and computes the log-mel in every item (their code was
  measured at 42–45 clips/s on this kind of machine);
- **decode and resample** (for reference): the same from the 44.1 kHz stereo
  originals, resampled in every item, as a loader without an offline copy would.

The three are timed round by round in one process (each once per round, the
order rotated every round), with the thread count pinned and printed; the
ratio store / decode at the model's rate is the figure to read.
Then one CP-ResNet training step (batch 32) gives the loader's share of a
step. Run: ``python benchmarks/data_loading.py [--clips 384] [--rounds 3]
[--threads 1] [--no-step]``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from eastmir import pipeline
from eastmir.audio import load_audio, resample
from eastmir.data.features import build_logmels
from eastmir.data.store import Store
from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.training.augment import mixup, spec_augment
from eastmir.training.datamodule import ClipDataModule
from timing import machine, round_by_round

OPENMIC = FrontendConfig(sample_rate=32000, n_mels=128, fmax=16000.0)
BATCH, WORKERS = 32, 2
STORE, AT_RATE, RESAMPLED = "store", "decode at 32 kHz mono (the authors')", "decode 44.1 kHz stereo + resample"


def make_clips(root: Path, n: int, offline: Path) -> None:
    """``n`` 10-s OGG clips at 44.1 kHz stereo (tones and noise) and a labels table under ``root``, and the same
    clips resampled once to the model's 32 kHz, mono, under ``offline`` (what the authors train from)."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    offline.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "labels"])
        for i in range(n):
            f = rng.uniform(100, 2000, 3)
            x = sum(np.sin(2 * np.pi * fi * np.arange(441000) / 44100) for fi in f) * 0.2
            x = x + 0.02 * rng.standard_normal(len(x))
            sf.write(root / "audio" / f"c{i:04d}.ogg", np.stack([x, x[::-1]], 1).astype(np.float32), 44100)
            mono = resample(((x + x[::-1]) / 2).astype(np.float32), 44100, OPENMIC.sample_rate)
            sf.write(offline / f"c{i:04d}.ogg", mono, OPENMIC.sample_rate)
            writer.writerow([f"audio/c{i:04d}.ogg", ["a", "b", "c", "d"][i % 4]])


class DecodeEveryItem(Dataset):
    """Decode (and resample, when the file is not at the model's rate and mono) and compute the log-mel in
    ``__getitem__``: the authors' dataset class."""

    def __init__(self, files: list[Path], targets: np.ndarray) -> None:
        self.files, self.targets = files, targets
        self.frontend = LogMelFrontend(OPENMIC)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        audio = load_audio(self.files[i], OPENMIC.sample_rate)[: 10 * OPENMIC.sample_rate]
        with torch.no_grad():
            logmel = self.frontend(torch.from_numpy(audio)[None])[0]
        return {
            "logmel": logmel,
            "targets": torch.from_numpy(self.targets[i]),
            "mask": torch.ones(len(self.targets[i]), dtype=torch.bool),
        }


def one_thread(_: int) -> None:
    torch.set_num_threads(1)


def epoch(loader: DataLoader) -> tuple[float, int]:
    """Seconds for one pass with mixup and SpecAugment on every batch, and the clips seen."""
    start, n = time.perf_counter(), 0
    for batch in loader:
        batch = {k: v for k, v in batch.items() if k != "clip_id"}
        batch = mixup(batch, 0.3)
        batch["logmel"] = spec_augment(batch["logmel"], 48, 192, inplace=True)  # as the training step does
        n += batch["targets"].shape[0]
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process (pinned)")
    parser.add_argument("--no-step", action="store_true", help="skip the CP-ResNet training step")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: that it runs (make test)")
    args = parser.parse_args()
    if args.smoke:
        global BATCH
        args.clips, args.rounds, args.no_step, BATCH = 8, 1, True, 4
    print(
        f"{machine(args.threads)} in the main process; {WORKERS} loader workers with 1 thread each; batch {BATCH}; "
        f"{args.clips} clips of 10 s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root, offline = Path(tmp) / "openmic-like", Path(tmp) / "at-32k-mono"
        started = time.perf_counter()
        make_clips(root, args.clips, offline)
        manifest = pipeline.prepare("folder", root, {"check_audio": False}, progress=False)
        print(f"rendered {args.clips} OGG clips in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        collection, report = build_logmels(manifest, Store(Path(tmp) / "store"), OPENMIC, progress=False, workers=2)
        print(f"store built once: {time.perf_counter() - started:.1f} s ({len(report.keys)} log-mels, 2 processes)")

        from eastmir.data.clips import ClipRecord

        records = [
            ClipRecord(c.clip_id, c.labels, c.mask, collection.entry(report.keys[c.clip_id])) for c in manifest.clips
        ]
        store_loader = ClipDataModule(
            {"train": records},
            "logmel",
            OPENMIC.n_frames(320000),
            OPENMIC.silence,
            batch_size=BATCH,
            num_workers=WORKERS,
        )._loader("train", True)
        store_loader.worker_init_fn = one_thread
        labels, _ = manifest.labels()

        def decoding(files: list[Path]) -> DataLoader:
            return DataLoader(
                DecodeEveryItem(files, labels),
                batch_size=BATCH,
                shuffle=True,
                drop_last=True,
                num_workers=WORKERS,
                worker_init_fn=one_thread,
            )

        loaders = {
            STORE: store_loader,
            AT_RATE: decoding([offline / Path(c.audio_path).name for c in manifest.clips]),
            RESAMPLED: decoding([manifest.audio_file(c) for c in manifest.clips]),
        }

        def rate(loader: DataLoader) -> float:
            seconds, n = epoch(loader)
            return n / seconds

        rates = round_by_round({name: lambda x=loader: rate(x) for name, loader in loaders.items()}, args.rounds)
        median = {name: statistics.median(r) for name, r in rates.items()}
        print("\n| path | clips/s (median of rounds) | slowest round | each round |")
        print("|---|---:|---:|---|")
        for name, r in rates.items():
            print(f"| {name} | {median[name]:.0f} | {min(r):.0f} | {', '.join(f'{x:.0f}' for x in r)} |")
        for baseline in (AT_RATE, RESAMPLED):
            ratios = [s / d for s, d in zip(rates[STORE], rates[baseline])]
            print(
                f"\nstore / {baseline}: {median[STORE] / median[baseline]:.1f}× (per-round ratios "
                f"{', '.join(f'{x:.1f}' for x in ratios)})"
            )
        decode = median[AT_RATE]
        store = median[STORE]
        if not args.no_step:
            from eastmir.students.cp_resnet import CPResNet

            model = CPResNet(num_classes=4)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            batch = next(iter(store_loader))
            times = []
            for _ in range(2):
                start = time.perf_counter()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    model(batch["logmel"]).logits, batch["targets"]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                times.append(time.perf_counter() - start)
            step = min(times)
            load = BATCH / store
            print(
                f"CP-ResNet training step, batch {BATCH}: {step:.1f} s; the store loader's {load * 1000:.0f} ms per "
                f"batch is {100 * load / (load + step):.2f} % of a step (decoding at the model's rate: "
                f"{100 * (BATCH / decode) / (BATCH / decode + step):.1f} %)"
            )


if __name__ == "__main__":
    main()
