"""Static int8 for a student in PyTorch: what ``eastmir predict --precision int8`` runs.

PyTorch's FX graph-mode post-training quantisation (``torch.ao.quantization``)
with the ``x86`` backend (oneDNN and FBGEMM kernels, which use AVX-512 VNNI or
AMX where the CPU has them; ``qnnpack`` on ARM): each convolution block of the
student (a child module, or an item of a ``nn.ModuleList`` child, that holds a
convolution: every eastmir student is built of these) is traced, its convolution, BatchNorm
and ReLU fused, and its weights quantised per channel to int8; activation
ranges are calibrated on clips the caller gives (``predict`` gives 32 of the
run's training clips, as ``eastmir export --quantize int8`` does). Each block
takes float32 in and gives float32 out, so the student's own ``forward``
(stage features, pooling, head) runs unchanged around them; a block FX cannot
trace stays float32.

On this repository's 2-core AVX-512 VNNI machine, Mobile FCN's convolutions
on a 10 s clip take 3.9 ms in int8 against 11.3 ms folded float32
(``eastmir complexity`` measures it in every run).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn

ENGINES = ("x86", "fbgemm", "qnnpack")  # in order of preference: x86 picks oneDNN or FBGEMM per op


def int8_engine() -> str | None:
    """The quantised backend this PyTorch build offers for int8 (``x86`` on Intel and AMD), or ``None``."""
    supported = torch.backends.quantized.supported_engines
    return next((e for e in ENGINES if e in supported), None)


def conv_blocks(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(parent, attribute)`` of every block int8 may replace: the children of ``model`` and the items of its
    ``nn.ModuleList`` children that hold a 2-d convolution."""
    found = []
    for name, child in model.named_children():
        items = list(child.named_children()) if isinstance(child, nn.ModuleList) else [(None, child)]
        for item, module in items:
            if any(isinstance(m, nn.Conv2d) for m in module.modules()):
                found.append((child, item) if item is not None else (model, name))
    return found


class Int8Error(RuntimeError):
    """The student has nothing int8 can quantise, or this PyTorch has no quantised backend."""


def quantize_student_int8(student: nn.Module, calibration: Iterable[torch.Tensor]) -> tuple[nn.Module, int, int]:
    """A copy of ``student`` (eval mode) whose convolution blocks run in static int8, calibrated by running
    ``calibration`` (inputs the student takes: ``(batch, mels, frames)`` log-mels or ``(batch, samples)``
    waveforms) through it. Returns the copy, the number of blocks quantised and of blocks left float32.

    Sets ``torch.backends.quantized.engine`` (a process-wide setting of PyTorch's) to :func:`int8_engine`."""
    with warnings.catch_warnings():  # PyTorch says on every call that it plans to move this API to torchao
        warnings.filterwarnings("ignore", message=".*(torchao|quantized tensor creation|deprecated).*")
        return _quantize(student, calibration)


def _quantize(student: nn.Module, calibration: Iterable[torch.Tensor]) -> tuple[nn.Module, int, int]:
    try:  # PyTorch has announced this API's move to torchao
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as err:
        raise Int8Error(f"this PyTorch ({torch.__version__}) has no FX quantisation ({err})") from None

    engine = int8_engine()
    if engine is None:
        raise Int8Error("this PyTorch build has no quantised backend (x86, fbgemm or qnnpack) for int8")
    torch.backends.quantized.engine = engine
    model = copy.deepcopy(student).eval()
    model.requires_grad_(False)
    blocks = conv_blocks(model)
    if not blocks:
        raise Int8Error(f"{type(student).__name__} has no convolution block int8 can quantise")
    inputs = [x.detach().float() for x in calibration]
    if not inputs:
        raise Int8Error("int8 calibration needs at least one input")
    seen: dict[int, torch.Tensor] = {}  # each block's input on the first calibration input: FX's example
    hooks = [
        getattr(parent, attribute).register_forward_pre_hook(
            lambda module, args, key=i: seen.setdefault(key, args[0].detach())
        )
        for i, (parent, attribute) in enumerate(blocks)
    ]
    with torch.no_grad():
        model(inputs[0])
    for hook in hooks:
        hook.remove()
    mapping = get_default_qconfig_mapping(engine)
    prepared, left = [], 0
    for i, (parent, attribute) in enumerate(blocks):
        if i not in seen:  # not on the path of this input (never called)
            left += 1
            continue
        try:
            observed = prepare_fx(getattr(parent, attribute), mapping, (seen[i],))
        except Exception:  # FX cannot trace it: it stays float32
            left += 1
            continue
        setattr(parent, attribute, observed)
        prepared.append((parent, attribute))
    if not prepared:
        raise Int8Error(f"none of {type(student).__name__}'s convolution blocks could be traced for int8")
    with torch.no_grad():
        for x in inputs:
            model(x)
    for parent, attribute in prepared:
        setattr(parent, attribute, convert_fx(getattr(parent, attribute)))
    return model, len(prepared), left


__all__ = ["Int8Error", "conv_blocks", "int8_engine", "quantize_student_int8"]
