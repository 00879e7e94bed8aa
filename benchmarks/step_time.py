"""Training-step cost of every system against Baseline, measured side by side.

For Mobile FCN and CP-ResNet (their published architectures, on clips short
enough for a CPU), every system's full training step (forward, losses,
backward, gradient clipping, Adam) runs on the same batch with cached teacher
embeddings, interleaved with Baseline's in one process. Reported:

- paired ratio: median over rounds of (system step / Baseline step in the same round);
- added cost: the system's extra work measured on its own (teacher head,
  compression, regulariser and KD, forward and backward, on fixed student
  features), as a percentage of the median Baseline step.

Targets (issue 3): added cost ≤ 2 % for EAsT_Final, EAsT_All and EAsT_KD,
paired ratio ≤ 1.05. The thread count is pinned (default 1) and printed: on a
shared 2-core machine, timings with every thread swing with the neighbours'
load (EAsT_All's added cost read 247 ms with all threads, 6.4 ms on one).
Run: ``make bench`` or ``python benchmarks/step_time.py [--quick] [--threads 1]
[--rounds 7] [--students mobile_fcn cp_resnet]``; ``--quick`` (about 2 min)
times the systems of Table 1 on Mobile FCN only, with 3 rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from eastmir.config import load_config
from eastmir.students.base import StudentOutput
from eastmir.training.checkpoints import TeacherHead
from eastmir.training.system import EastSystem

QUICK_SYSTEMS = ["baseline", "kd", "east_cos_diff", "east_final", "east_all", "east_kd"]
SYSTEMS = [
    "baseline",
    "kd",
    "east_cos_diff",
    "east_final",
    "east_all",
    "east_kd",
    "east_fitnet",
    "east_fitnet_linear",
    "east_dc_linear",
]
STUDENTS = {  # student config, input (mels, frames), teacher frames
    "mobile_fcn": ({"name": "mobile_fcn", "n_mels": 96}, (96, 500), 5),
    "cp_resnet": ({"name": "cp_resnet", "rho": 7, "base_channels": 128}, (128, 250), 3),
}
CLASSES, DIM, BATCH = 20, 512, 16


def build(name: str, student: dict, workdir: Path) -> EastSystem:
    cfg = load_config(f"synth/{name}", workdir=workdir).changed({"student": dict(student)})
    torch.manual_seed(0)
    system = EastSystem(cfg, num_classes=CLASSES, embedding_dim=DIM if cfg.teacher else None)
    if system.distiller.teacher_head is not None:  # a stand-in TeacherLR head: its values do not change the cost
        g = torch.Generator().manual_seed(1)
        head = {"weight": torch.randn(CLASSES, DIM, generator=g) * 0.1, "bias": torch.zeros(CLASSES)}
        system.set_teacher_head(TeacherHead(Path("a random head"), head, []))
    return system


def train_step(system: EastSystem, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    start = time.perf_counter()
    loss = system.losses(batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(system.parameters(), 1.0)
    optimizer.step()
    return time.perf_counter() - start


def added_cost(system: EastSystem, batch: dict, repeats: int = 20) -> float:
    """Median seconds of the system's teacher-side terms alone, forward and backward, on fixed student outputs."""
    with torch.no_grad():
        out = system.student(batch["logmel"])
    times = []
    for _ in range(repeats):
        stages = [s.clone().requires_grad_(True) for s in out.stages]
        logits = out.logits.clone().requires_grad_(True)
        start = time.perf_counter()
        terms = system.distillation_terms(StudentOutput(logits, stages), batch)
        if terms:
            sum(terms.values()).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads, pinned (default 1)")
    parser.add_argument("--quick", action="store_true", help="Mobile FCN, the Table-1 systems, 3 rounds (≈2 min)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: that it runs (make test)")
    args = parser.parse_args()
    systems_to_time = QUICK_SYSTEMS if args.quick else SYSTEMS
    rounds = 3 if args.quick else args.rounds
    students = ["mobile_fcn"] if args.quick or args.smoke else args.students
    batch_size, frames_cut = (4, 120) if args.smoke else (BATCH, None)
    if args.smoke:
        systems_to_time, rounds = QUICK_SYSTEMS[:3], 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) (pinned), {rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for student_name in students:
            student, (mels, frames), t_frames = STUDENTS[student_name]
            frames = frames_cut or frames
            g = torch.Generator().manual_seed(0)
            batch = {
                "logmel": torch.randn(batch_size, mels, frames, generator=g),
                "embedding": torch.randn(batch_size, t_frames, DIM, generator=g),
                "targets": (torch.rand(batch_size, CLASSES, generator=g) < 0.3).float(),
                "mask": torch.rand(batch_size, CLASSES, generator=g) < 0.7,
            }
            systems = {n: build(n, student, work) for n in systems_to_time}
            optims = {n: s.configure_optimizers()["optimizer"] for n, s in systems.items()}
            for n in systems_to_time:  # warm-up
                train_step(systems[n], optims[n], batch)
            times = {n: [] for n in systems_to_time}
            for r in range(rounds):
                order = systems_to_time if r % 2 == 0 else systems_to_time[::-1]
                for n in order:
                    times[n].append(train_step(systems[n], optims[n], batch))
            base = statistics.median(times["baseline"])
            print(
                f"\n### {student_name}: batch {batch_size} × {mels} mels × {frames} frames, "
                f"teacher {t_frames} × {DIM}; "
                f"Baseline step {base * 1000:.0f} ms (median of {rounds}), {torch.get_num_threads()} thread(s)\n"
            )
            print("| system | step (ms) | paired ratio vs Baseline | added cost alone (ms) | added / Baseline step |")
            print("|---|---:|---:|---:|---:|")
            for n in systems_to_time:
                ratio = statistics.median(t / b for t, b in zip(times[n], times["baseline"]))
                extra = added_cost(systems[n], batch) if n != "baseline" else 0.0
                name = systems[n].config.system or n
                print(
                    f"| {name} | {statistics.median(times[n]) * 1000:.0f} | {ratio:.3f} | {extra * 1000:.1f} "
                    f"| {100 * extra / base:.2f} % |"
                )


if __name__ == "__main__":
    main()
