"""The paper recipes' training step on an accelerator: eastmir as configured against the same model run the authors'
way, interleaved round by round, synchronised.

Recipes:

- **OpenMIC** (EAsT_Final, VGGish teacher, CP-ResNet 128 channels, batch 16, 10 s at 32 kHz): eastmir's step
  starts from waveforms and a mixup partner per clip and runs the front end, the per-clip filterbank jitter,
  SpecAugment and mixup on the device; **the authors' way** starts from log-mels (their featurizer and
  augmentation run in CPU loader workers, so their step is forward, loss, backward and Adam), in float32, NCHW.
  A third contender is eastmir's step fed those log-mels with the augmentation off (the front end's cost is
  the difference).
- **MagnaTagATune** (Mobile FCN, batch 16, 96 × 1501 log-mels, Baseline): both start from log-mels.

Contenders: the authors' way; eastmir float32 (channels-last, cuDNN autotuning); eastmir under bf16 autocast (where
the device computes bf16 natively); eastmir compiled (``trainer.compile: default``, torch.compile with inductor, on
the bf16 step where there is one; on a GPU, or with ``--compile``). Every step is synchronised; each contender is
warmed up (a compiled one compiles then), then all run once per round in rotated order. Printed: the median step,
the median of the per-round ratios to the authors' way, and the operator launches per step (CUDA kernels on a GPU,
``aten::`` calls on a CPU, from ``torch.profiler``). The first line names torch, the device and the threads.

Run: ``python benchmarks/gpu_step.py`` (a GPU: about three minutes with the compilation), ``--smoke`` (tiny shapes
on the CPU, seconds: ``make test`` runs it), ``--device cpu --rounds 3`` for the CPU's own figures.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # eastmir from this checkout if not installed

from eastmir.config import load_config
from eastmir.training.system import EastSystem
from timing import round_by_round


def machine_line(device: torch.device, threads: int) -> str:
    torch.set_num_threads(threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return f"torch {torch.__version__}{cuda}, device {device} ({name}), {torch.get_num_threads()} CPU thread(s)"


def pick_device(asked: str) -> torch.device:
    """``auto``: a CUDA device when torch sees one, else the CPU; anything else as named."""
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(asked)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Contender:
    """One way of running a recipe's step: a system, its optimiser, the batch it starts from, autocast."""

    def __init__(self, system: EastSystem, batch: dict, device: torch.device, bf16: bool = False) -> None:
        self.system = system.to(device).train()
        self.system.log = lambda *args, **kwargs: None  # no trainer to log to
        self.optimizer = self.system.configure_optimizers()["optimizer"]
        self.batch = {k: _to(v, device) for k, v in batch.items()}
        self.device, self.bf16 = device, bf16

    def step(self) -> None:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            loss = self.system.training_step(dict(self.batch), 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.system.parameters(), 1.0)
        self.optimizer.step()

    def timed(self) -> float:
        synchronise(self.device)
        start = time.perf_counter()
        self.step()
        synchronise(self.device)
        return time.perf_counter() - start

    def launches(self) -> int:
        """Kernels launched (GPU) or ``aten::`` operators called (CPU) in one step."""
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            self.step()
            synchronise(self.device)
        if self.device.type == "cuda":
            return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def openmic(args, device: torch.device, workdir: str) -> dict[str, Contender]:
    batch, seconds = args.batch, args.seconds
    narrow = [f"student.base_channels={args.channels}"] if args.channels else []
    common = [f"data.clip_seconds={seconds}", *narrow]
    samples, frames = int(seconds * 32000), int(seconds * 32000) // 320 + 1
    teacher_frames = max(1, round(seconds / 0.96))
    g = torch.Generator().manual_seed(0)

    def clips(key: str, shape: tuple[int, ...]) -> dict:
        return {
            key: torch.randn(batch, *shape, generator=g) * 0.1,
            "embedding": torch.randn(batch, teacher_frames, 128, generator=g),
            "targets": (torch.rand(batch, 20, generator=g) < 0.3).float(),
            "mask": torch.rand(batch, 20, generator=g) < 0.5,
        }

    waves = dict(clips("waveform", (samples,)), partner=clips("waveform", (samples,)))
    logmels = clips("logmel", (128, frames))

    def system(*overrides: str) -> EastSystem:
        config = load_config("openmic/east_final-vggish", [*common, *overrides], workdir=workdir)
        torch.manual_seed(0)
        return EastSystem(config, 20, embedding_dim=128, clip_seconds=seconds, embedding_period=0.96)

    off = "augment={mixup_alpha: 0.0, spec_augment: null, fmin_jitter: 0, fmax_jitter: 0}"
    plain = [off, "trainer.channels_last=false"]
    contenders = {
        "the authors' way (log-mels, float32, NCHW)": Contender(system(*plain), logmels, device),
        "eastmir fed log-mels, no augmentation": Contender(system(off), logmels, device),
        "eastmir float32": Contender(system(), waves, device),
    }
    if native_bf16(device):
        contenders["eastmir bf16"] = Contender(system(), waves, device, bf16=True)
    return _with_compiled(args, device, contenders)


def magnatagatune(args, device: torch.device, workdir: str) -> dict[str, Contender]:
    batch, frames = args.batch, int(args.seconds * 16000) // 320 + 1
    g = torch.Generator().manual_seed(1)
    logmels = {
        "logmel": torch.randn(batch, 96, max(frames, 97), generator=g),
        "targets": (torch.rand(batch, 50, generator=g) < 0.1).float(),
        "mask": torch.ones(batch, 50, dtype=torch.bool),
    }

    def system(*overrides: str) -> EastSystem:
        config = load_config(
            "magnatagatune/baseline", [f"data.clip_seconds={args.seconds}", *overrides], workdir=workdir
        )
        torch.manual_seed(0)
        return EastSystem(config, 50, clip_seconds=args.seconds)

    contenders = {
        "the authors' way (log-mels, float32, NCHW)": Contender(system("trainer.channels_last=false"), logmels, device),
        "eastmir float32": Contender(system(), logmels, device),
    }
    if native_bf16(device):
        contenders["eastmir bf16"] = Contender(system(), logmels, device, bf16=True)
    return _with_compiled(args, device, contenders)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a GPU with it, a CPU with AMX or AVX512-BF16): elsewhere it is
    emulated, many times slower, and not a contender."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from eastmir.inference.predict import bf16_capability

    return bf16_capability() is not None


def _with_compiled(args, device, contenders: dict[str, Contender]) -> dict[str, Contender]:
    """Add the compiled step (bf16 where native, else float32) on a GPU, or on a CPU when asked."""
    if args.compile or (device.type == "cuda" and not args.smoke):
        base = "eastmir bf16" if "eastmir bf16" in contenders else "eastmir float32"
        source = contenders[base]
        compiled = Contender(copy.deepcopy(source.system), {}, device, bf16=source.bf16)
        compiled.batch = source.batch
        compiled.system.compile_student("default")
        contenders[f"{base}, compiled"] = compiled
    return contenders


RECIPES: dict[str, Callable] = {"openmic": openmic, "magnatagatune": magnatagatune}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cuda, cpu")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps per contender before timing")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (pinned)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--compile", action="store_true", help="also the compiled step on a CPU (minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, 2 rounds: that it runs")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if args.smoke:
        device, args.rounds, args.warmup = torch.device("cpu"), 2, 1
    print(machine_line(device, args.threads))
    with tempfile.TemporaryDirectory() as workdir:
        for recipe in args.recipes:
            shapes = {"batch": 16, "seconds": 10.0 if recipe == "openmic" else 30.0, "channels": None}
            if args.smoke:
                shapes = {"batch": 4, "seconds": 2.0, "channels": 8}
            run_args = argparse.Namespace(**vars(args), **shapes)
            contenders = RECIPES[recipe](run_args, device, workdir)
            report(recipe, run_args, contenders)


def report(recipe: str, args, contenders: dict[str, Contender]) -> None:
    for contender in contenders.values():
        for _ in range(args.warmup):
            contender.timed()
    launches = {name: c.launches() for name, c in contenders.items()}
    measured = round_by_round({name: c.timed for name, c in contenders.items()}, args.rounds)
    authors = next(iter(measured))
    what = f"batch {args.batch}, {args.seconds:g} s clips" + (f", {args.channels} channels" if args.channels else "")
    print(f"\n{recipe} recipe ({what}), {args.rounds} rounds interleaved, synchronised\n")
    print("| contender | median step (ms) | × the authors' way (median of paired rounds) | launches per step |")
    print("|---|---:|---:|---:|")
    for name, times in measured.items():
        ratio = statistics.median(t / a for t, a in zip(times, measured[authors], strict=True))
        print(f"| {name} | {1000 * statistics.median(times):.1f} | {ratio:.2f} | {launches[name]} |")
    fed, full = "eastmir fed log-mels, no augmentation", "eastmir float32"
    if fed in measured and full in measured:
        cost = statistics.median(a / b for a, b in zip(measured[full], measured[fed], strict=True))
        print(f"\nThe front end and augmentation on the device: {full} is {cost:.3f}× {fed} (paired rounds' median)")


if __name__ == "__main__":
    main()
