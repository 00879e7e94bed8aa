"""Teacher extraction throughput: ``eastmir extract`` against a per-file loop at batch 1, same teacher, same clips.

- **extract**: the pipeline's extraction (planned batches of 8 clips with
  audio decoded by 2 loader workers while the teacher runs, and batches of
  1 without workers; atomic writes into the store);
- **loop**: for each file, decode it, embed it alone (batch 1) and save it,
  with the teacher built once;
- **loop, teacher per file**: the same, building the teacher for every file,
  as the authors' ``musicnn.extractor`` does (it rebuilds its graph and
  restores its checkpoint on every call).

All on the same synth clips (10 s, 16 kHz), timed in one run with the thread
count pinned and printed. Run: ``python benchmarks/extract_throughput.py
[--clips 48] [--threads 2] [--teachers aisfx musicnn]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eastmir import pipeline
from eastmir.audio import load_audio
from eastmir.data.store import Store
from eastmir.registry import TEACHERS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teachers", nargs="+", default=["aisfx", "musicnn"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) (pinned); {args.clips} synth clips of 10 s\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        options = {"n_clips": args.clips, "clip_seconds": 10.0, "seed": 5}
        manifest = pipeline.prepare("synth", tmp / "synth", options, progress=False)
        print(
            "| teacher | extract, batch 8, 2 workers (clips/s) | extract, batch 1 (clips/s) | "
            "loop, batch 1 (clips/s) | loop, teacher per file (clips/s) | best extract / loop | "
            "best extract / loop per file |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        import eastmir.training.extraction  # noqa: F401  (Lightning's import is not extraction time)

        for name in args.teachers:
            factory = TEACHERS.get(name)
            teacher = factory()
            with torch.no_grad():  # warm-up, as the loop's first file would be
                teacher.embed(torch.zeros(1, 3 * teacher.sample_rate))
            rates = []
            for batch, workers in ((8, 2), (1, 0)):
                start = time.perf_counter()
                store = Store(tmp / f"store-{name}-{batch}")
                pipeline.extract(teacher, manifest, store, batch_size=batch, progress=False, workers=workers)
                rates.append(len(manifest.clips) / (time.perf_counter() - start))
            plain = loop(factory, manifest, tmp / f"loop-{name}", rebuild=False)
            rebuilt = loop(factory, manifest, tmp / f"rebuild-{name}", rebuild=True)
            best = max(rates)
            print(
                f"| {name} | {rates[0]:.1f} | {rates[1]:.1f} | {plain:.1f} | {rebuilt:.1f} | {best / plain:.2f} | "
                f"{best / rebuilt:.2f} |"
            )


if __name__ == "__main__":
    main()
