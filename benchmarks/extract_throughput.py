"""Teacher extraction throughput: ``eastmir extract`` against a per-file loop at batch 1, same teacher, same clips.

- **extract**: the pipeline's extraction (planned batches of 8 clips with
  audio decoded by 2 loader workers while the teacher runs, and batches of
  1 without workers; atomic writes into the store);
- **loop**: for each file, decode it, embed it alone (batch 1) and save it,
  with the teacher built once;
- **loop, teacher per file**: the same, building the teacher for every file,
  as the authors' ``musicnn.extractor`` does (it rebuilds its graph and
  restores its checkpoint on every call).

All on the same synth clips (10 s, 16 kHz), timed **round by round** in one
process (each contender once per round into a fresh store or folder, the order
rotated every round), with the thread count pinned and printed; each figure is
clips per second, median (slowest) over rounds, and each ratio the median of
the rounds' paired ratios. Run: ``python benchmarks/extract_throughput.py
[--clips 48] [--rounds 3] [--threads 2] [--teachers aisfx musicnn]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from eastmir import pipeline
from eastmir.audio import load_audio
from eastmir.data.store import Store
from eastmir.registry import TEACHERS
from timing import machine, round_by_round


def loop(teacher_factory, manifest, out: Path, rebuild: bool) -> float:
    out.mkdir(parents=True, exist_ok=True)
    teacher = None if rebuild else teacher_factory()
    start = time.perf_counter()
    for clip in manifest.clips:
        t = teacher_factory() if rebuild else teacher
        audio = load_audio(manifest.audio_file(clip), t.sample_rate)
        with torch.no_grad():
            embedding = t.embed(torch.from_numpy(audio)[None])[0].numpy()
        np.save(out / f"{clip.clip_id}.npy", embedding)
    return len(manifest.clips) / (time.perf_counter() - start)


EXTRACT_8, EXTRACT_1, LOOP, PER_FILE = (
    "extract, batch 8, 2 workers",
    "extract, batch 1",
    "loop, batch 1",
    "loop, teacher per file",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teachers", nargs="+", default=["aisfx", "musicnn"])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: that it runs (make test)")
    args = parser.parse_args()
    if args.smoke:
        args.clips, args.rounds, args.teachers = 2, 1, ["aisfx"]
    print(f"{machine(args.threads)}; {args.clips} synth clips of 10 s; {args.rounds} rounds\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        options = {"n_clips": args.clips, "clip_seconds": 10.0, "seed": 5}
        manifest = pipeline.prepare("synth", tmp / "synth", options, progress=False)
        contenders = (EXTRACT_8, EXTRACT_1, LOOP, PER_FILE)
        print(
            "| teacher | "
            + " | ".join(f"{c} (clips/s)" for c in contenders)
            + " | best extract / loop | best extract / loop per file |"
        )
        print("|---|" + "---:|" * (len(contenders) + 2))
        import eastmir.training.extraction  # noqa: F401  (Lightning's import is not extraction time)

        fresh = iter(range(10**6))  # a new store or folder for every call: nothing is ever already there
        for name in args.teachers:
            factory = TEACHERS.get(name)
            teacher = factory()
            with torch.no_grad():  # warm-up, as the loop's first file would be
                teacher.embed(torch.zeros(1, 3 * teacher.sample_rate))

            def extract(batch: int, workers: int, teacher=teacher, name=name) -> float:
                start = time.perf_counter()
                store = Store(tmp / f"store-{name}-{next(fresh)}")
                pipeline.extract(teacher, manifest, store, batch_size=batch, progress=False, workers=workers)
                return len(manifest.clips) / (time.perf_counter() - start)

            rates = round_by_round(
                {
                    EXTRACT_8: partial(extract, 8, 2),
                    EXTRACT_1: partial(extract, 1, 0),
                    LOOP: lambda f=factory, n=name: loop(f, manifest, tmp / f"loop-{n}-{next(fresh)}", False),
                    PER_FILE: lambda f=factory, n=name: loop(f, manifest, tmp / f"rebuild-{n}-{next(fresh)}", True),
                },
                args.rounds,
            )
            best = [max(a, b) for a, b in zip(rates[EXTRACT_8], rates[EXTRACT_1])]  # per round
            cells = [f"{statistics.median(rates[c]):.1f} ({min(rates[c]):.1f})" for c in contenders]
            over_loop = statistics.median(b / p for b, p in zip(best, rates[LOOP]))
            over_rebuilt = statistics.median(b / p for b, p in zip(best, rates[PER_FILE]))
            print(f"| {name} | " + " | ".join(cells) + f" | {over_loop:.2f} | {over_rebuilt:.2f} |")


if __name__ == "__main__":
    main()
