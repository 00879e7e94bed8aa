"""Where a student predicts: choosing the device (``--device``) and running float32 as float32 on a GPU."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from eastmir.errors import RunError


@contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """On a CUDA device, cuDNN and cuBLAS in true float32 (no TF32) for the block; elsewhere nothing."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def choose_device(asked: str | torch.device = "auto") -> torch.device:
    """The device to predict on: ``cpu``, ``cuda`` (or ``cuda:N``), or ``auto`` (a CUDA device when torch sees
    one, else the CPU); a CUDA device torch cannot use is a one-line :class:`RunError`."""
    if isinstance(asked, torch.device):
        return asked
    if not DEVICE.match(str(asked)):
        raise RunError(f"--device must be auto, cpu, cuda or cuda:N, got {asked!r}")
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(asked)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise RunError(
                f"--device {asked}: torch {torch.__version__} ({build}) sees no CUDA device; use --device cpu, or "
                "install a CUDA build of torch (README: On a GPU)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RunError(f"--device {asked}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
