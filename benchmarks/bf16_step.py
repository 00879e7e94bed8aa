"""One EAsT_Final training step in bfloat16 mixed precision (``trainer.precision: bf16-mixed``: the student
under ``torch.autocast``, the losses in float32) against float32, interleaved round by round.

The same system (distance correlation on the final stage, λ 0.3) is built once from a seed and stepped on the
same batch, float32 and bf16 alternating, so both see the same load; the table gives the min and median step
of each and the median of the paired ratios, against the targets of the speed issue (CP-ResNet ≤ 0.5,
Mobile FCN ≤ 0.85). bf16 is fast where the CPU has bf16 instructions (AMX, AVX512-BF16: printed) and on GPUs.
Run: ``python benchmarks/bf16_step.py [--rounds 10] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial

import torch

from eastmir.config import load_config
from eastmir.inference.predict import bf16_capability
from eastmir.training.system import EastSystem
from timing import machine, round_by_round, training_step

# student → (config overrides, batch, input shape of one clip, target ratio)
CASES = {
    "cp_resnet": (
        ["student={name: cp_resnet}", "frontend.n_mels=128", "frontend.sample_rate=32000", "frontend.fmax=16000"],
        8,
        (128, 501),
        0.5,
    ),
    "mobile_fcn": ([], 16, (96, 501), 0.85),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--students", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: that it runs (make test)")
    args = parser.parse_args()
    if args.smoke:
        args.students, args.rounds = ["mobile_fcn"], 1
    print(f"{machine(args.threads)}; bf16 instructions: {bf16_capability() or 'none'}, {args.rounds} rounds\n")
    print("| student | batch | float32 step, min / median (ms) | bf16 step, min / median (ms) | ratio | target |")
    print("|---|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.students:
            overrides, n, shape, target = CASES[name]
            if args.smoke:
                n, shape = 2, (shape[0], 120)
            config = load_config("synth/east_final", overrides, workdir=tmp)
            torch.manual_seed(0)
            system = EastSystem(config, 20, embedding_dim=512, clip_seconds=10.0, embedding_period=1.0).train()
            optimizer = system.configure_optimizers()["optimizer"]
            g = torch.Generator().manual_seed(0)
            batch = {
                "logmel": torch.randn(n, *shape, generator=g),
                "embedding": torch.randn(n, 10, 512, generator=g),
                "targets": (torch.rand(n, 20, generator=g) < 0.3).float(),
                "mask": torch.ones(n, 20, dtype=torch.bool),
            }
            for bf16 in (False, True):
                training_step(system, optimizer, batch, bf16)  # warm-up
            times = round_by_round(
                {b: partial(training_step, system, optimizer, batch, b) for b in (False, True)}, args.rounds
            )
            ratio = statistics.median(b / a for a, b in zip(times[False], times[True]))
            f32 = f"{min(times[False]) * 1e3:.0f} / {statistics.median(times[False]) * 1e3:.0f}"
            b16 = f"{min(times[True]) * 1e3:.0f} / {statistics.median(times[True]) * 1e3:.0f}"
            verdict = "met" if ratio <= target else "not met"
            size = f"{n} × {' × '.join(map(str, shape))}"
            print(f"| {name} | {size} | {f32} | {b16} | {ratio:.2f} | ≤ {target} {verdict} |")


if __name__ == "__main__":
    main()
