"""Tagging a collection: ``eastmir predict --device cuda`` against the same command with ``--device cpu``.

Trains a small run first (the ``folder`` recipe's Mobile FCN, one epoch on generated clips: the weights do not
matter for speed), writes ``--files`` generated recordings of ``--seconds`` seconds at 44.1 kHz (so every file is
decoded and resampled, as a real collection is), then runs the prediction on each device in alternating order,
``--rounds`` times, through the Python API that the command uses (``load_student`` and ``predict_files``, with
``--workers`` decoding processes and batches of ``--batch-size`` windows). Printed: files per second of each,
the median paired ratio, and the largest difference between the two devices' probabilities (they must agree to
1e-4 in float32). The first line names torch, CUDA and the device.

Run: ``python benchmarks/gpu_predict.py`` (a GPU: 2 000 files of 10 s, a few minutes), ``--smoke`` (a few
files, the CPU against itself with and without workers: ``make test`` runs it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # eastmir from this checkout if not installed

from eastmir import load_student, pipeline
from eastmir.config import load_config
from eastmir.inference.predict import Failure
from gpu_fit import CLASSES, write_dataset


def write_collection(folder: Path, files: int, seconds: float, rate: int = 44100) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"song{i:05d}.wav"
        sf.write(path, (rng.standard_normal(int(seconds * rate)) * 0.05).astype(np.float32), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def timed_prediction(student, paths, workers: int, batch_size: int) -> tuple[float, np.ndarray]:
    if student.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = list(student.predict_files(paths, batch_size=batch_size, progress=False, workers=workers))
    elapsed = time.perf_counter() - start
    failed = [r for r in results if isinstance(r, Failure)]
    assert not failed, failed[0].reason
    return len(paths) / elapsed, np.stack([r.probabilities for r in results])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="a few files; the CPU with and without workers")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.files, args.seconds, args.rounds, args.workers, args.batch_size = 6, 3.0, 1, 2, 8
    gpu = torch.cuda.is_available() and not args.smoke
    where = torch.cuda.get_device_name(0) if gpu else "no GPU: the CPU against itself with workers"
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    print(f"torch {torch.__version__}{cuda}, {where}, {torch.get_num_threads()} CPU thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "data", 40, 2.0, 16000)
        pipeline.prepare("folder", tmp / "data", {"csv": "labels.csv", "classes": CLASSES}, progress=False)
        config = load_config(
            "folder/baseline",
            [f"data.root={tmp / 'data'}", "trainer.max_epochs=1", "trainer.accelerator=cpu", "name=tagger"],
            workdir=tmp,
        )
        run = pipeline.fit(config, progress=False)
        paths = write_collection(tmp / "collection", args.files, args.seconds)
        contenders = {
            "cpu": (load_student(run, device="cpu"), 0 if args.smoke else args.workers),
            "cuda" if gpu else "cpu, workers": (load_student(run, device="cuda" if gpu else "cpu"), args.workers),
        }
        names = list(contenders)
        rates: dict[str, list[float]] = {name: [] for name in names}
        outputs: dict[str, np.ndarray] = {}
        timed_prediction(contenders[names[-1]][0], paths[:8], contenders[names[-1]][1], args.batch_size)  # warm
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                student, workers = contenders[name]
                rate, outputs[name] = timed_prediction(student, paths, workers, args.batch_size)
                rates[name].append(rate)
    ratio = statistics.median(b / a for a, b in zip(rates[names[0]], rates[names[1]], strict=True))
    worst = float(np.abs(outputs[names[0]] - outputs[names[1]]).max())
    print(
        f"\n{args.files} files of {args.seconds:g} s at 44.1 kHz, {args.rounds} round(s), batches of "
        f"{args.batch_size} windows\n\n| contender | workers | files/s (median) | × cpu | largest difference |\n"
        "|---|---:|---:|---:|---:|"
    )
    for name in names:
        times = f"{ratio:.2f}" if name == names[1] else "1.00"
        print(
            f"| {name} | {contenders[name][1]} | {statistics.median(rates[name]):.1f} | {times} | "
            f"{worst if name == names[1] else 0:.2e} |"
        )


if __name__ == "__main__":
    main()
