"""Every student's training step with channels-last convolution weights (our default,
``trainer.channels_last: true``) against the plain NCHW layout (before), paired.

The same Baseline system (forward, masked BCE, backward, Adam) is built twice
per student from the same seed, differing only in ``trainer.channels_last``,
and the two are timed in alternating order on the same batch; the ratio of
each round's pair is reported (target ≤ 0.8). The thread count is pinned
and printed. Run: ``python benchmarks/training_step.py [--rounds 5] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial

import torch

from eastmir.config import load_config
from eastmir.training.system import EastSystem
from timing import machine, round_by_round, training_step

# student → (config overrides, input shape of one batch of 16)
CASES = {
    "mobile_fcn": ([], (16, 96, 500)),
    "fcn": (["student={name: fcn, n_mels: 96}"], (16, 96, 500)),
    "cp_resnet": (
        ["student={name: cp_resnet}", "frontend.n_mels=128", "frontend.sample_rate=32000", "frontend.fmax=16000"],
        (16, 128, 250),
    ),
    "short_chunk_cnn": (["student={name: short_chunk_cnn}", "frontend.n_mels=128"], (16, 128, 236)),
    "harmonic_cnn": (["student={name: harmonic_cnn}"], (16, 80000)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--students", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: that it runs (make test)")
    args = parser.parse_args()
    if args.smoke:
        args.students, args.rounds = ["mobile_fcn"], 1
    print(f"{machine(args.threads)}; batch 16, {args.rounds} rounds\n")
    print("| student | input | NCHW step (ms) | channels-last step (ms) | paired ratio | target ≤ 0.8 |")
    print("|---|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.students:
            overrides, shape = CASES[name]
            if args.smoke:
                shape = (4, *shape[1:-1], 120)
            systems, optimizers = {}, {}
            for layout in (False, True):
                config = load_config("synth/baseline", [*overrides, f"trainer.channels_last={layout}"], workdir=tmp)
                torch.manual_seed(0)
                systems[layout] = EastSystem(config, 20).train()
                optimizers[layout] = systems[layout].configure_optimizers()["optimizer"]
            g = torch.Generator().manual_seed(0)
            key = systems[True].student.input_key
            batch = {
                key: torch.randn(*shape, generator=g),
                "targets": (torch.rand(shape[0], 20, generator=g) < 0.3).float(),
                "mask": torch.ones(shape[0], 20, dtype=torch.bool),
            }
            for layout in (False, True):
                training_step(systems[layout], optimizers[layout], batch)  # warm-up
            times = round_by_round(
                {x: partial(training_step, systems[x], optimizers[x], batch) for x in (False, True)},
                args.rounds,
            )
            ratio = statistics.median(b / a for a, b in zip(times[False], times[True]))
            before, after = statistics.median(times[False]) * 1000, statistics.median(times[True]) * 1000
            verdict = "yes" if ratio <= 0.8 else "no"
            print(f"| {name} | {' × '.join(map(str, shape))} | {before:.0f} | {after:.0f} | {ratio:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
