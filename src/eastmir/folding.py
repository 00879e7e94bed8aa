"""Making a frozen network fast for inference, without changing what it computes
(students in ``predict`` / ``export``, teachers in ``extract``).

Measured on this 2-core machine (1 thread, batch 1), Mobile FCN on a 10 s
clip: 49 ms eager, 43 ms with every BatchNorm folded into its convolution,
27 ms in channels-last memory, 12 ms with both; CP-ResNet 309 → 253 ms
(``eastmir complexity`` prints the current figures). Folding is exact up to
float rounding (max difference ~1e-7 on the logits).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module, *example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every BatchNorm2d that directly follows a Conv2d folded into it.

    The pairs are found by running ``example`` once and following the tensors
    (a BatchNorm whose input is exactly a convolution's output), so any
    architecture works without naming its layers. Returns the copy and the
    number of folded pairs.
    """
    model = copy.deepcopy(model).eval()
    # Each output is kept alive until the pass ends: an ``id`` is only unique
    # among live objects, and a freed convolution output's id can be reused by
    # an unrelated tensor (which once paired a 204-channel BatchNorm with a
    # 51-channel convolution).
    made_by: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        made_by[id(output)] = (module, output)

    def after_bn(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        source = made_by.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            pairs.append((source[0], module))

    hooks = [
        m.register_forward_hook(after_conv if isinstance(m, nn.Conv2d) else after_bn)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    with torch.no_grad():
        model(*example)
    for hook in hooks:
        hook.remove()
    names = {m: name for name, m in model.named_modules()}
    for conv, bn in pairs:
        fused = fuse_conv_bn_eval(conv, bn)
        conv.weight, conv.bias = fused.weight, fused.bias
        parent, _, attribute = names[bn].rpartition(".")
        setattr(model.get_submodule(parent), attribute, nn.Identity())
    return model, len(pairs)


def optimise_for_inference(model: nn.Module, *example: torch.Tensor, channels_last: bool = True) -> nn.Module:
    """Eval mode, BatchNorm folded, convolution weights channels-last, gradients off: a copy of ``model``."""
    fast, _ = fold_batchnorm(model, *example)
    fast = fast.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    fast.requires_grad_(False)
    return fast
