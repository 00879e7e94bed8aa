"""Windows of a recording, the one way ``predict`` and the exported model both cut it.

A recording's input (log-mel frames, or samples for a waveform student) is
cut into windows of the training clip length ``size`` every ``step``; the
last window ends with the recording (unless a window already does), and a
recording shorter than one window is padded to one with ``pad`` (the
log-mel of silence), as training pads a short clip. The file's score is the
mean (or max) of its windows' scores.

:func:`cut` is written with tensor operations only, so the exported graph
(ONNX, TorchScript) holds the very same windowing for inputs of any length.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

HOP_FRACTION = 0.5  # the default hop: half a window
AGGREGATIONS = ("mean", "max")  # how a recording's windows make its score


def cut(x: torch.Tensor, size: int, step: int, pad: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (batch, ..., time)`` → windows ``(batch, windows, ..., size)`` and their weights ``(windows,)``.

    The weights are 1, except 0 for the closing window when the regular ones
    already end with the recording (it would count that window twice).
    """
    time = x.shape[-1]
    x = F.pad(x, (0, torch.sym_max(size - time, 0)), value=pad)
    time = x.shape[-1]
    regular = x.unfold(-1, size, step)  # (batch, ..., n, size)
    closing = x[..., time - size :].unsqueeze(-2)  # (batch, ..., 1, size)
    windows = torch.cat([regular, closing], dim=-2).movedim(-2, 1)  # (batch, n + 1, ..., size)
    n = regular.shape[-2]
    weights = torch.ones(n + 1, dtype=x.dtype, device=x.device)
    overhang = torch.sym_min((time - size) - (n - 1) * step, 1)  # 0 when the last regular window ends there
    weights = torch.cat([weights[:n], weights[n:] * overhang])
    return windows, weights


def _cut_torchscript(x: torch.Tensor, size: int, step: int, pad: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cut` for TorchScript (whose tracer would freeze the input length into the graph): the same
    windows and weights, with TorchScript's own integer arithmetic (tested equal to :func:`cut`)."""
    time = x.size(-1)
    x = F.pad(x, [0, max(size - time, 0)], value=pad)
    time = x.size(-1)
    regular = x.unfold(-1, size, step)
    closing = x[..., time - size :].unsqueeze(-2)
    windows = torch.cat([regular, closing], dim=-2).movedim(-2, 1)
    n = regular.size(-2)
    weights = torch.ones(n + 1, dtype=x.dtype, device=x.device)
    weights[n] = float(min((time - size) - (n - 1) * step, 1))
    return windows, weights


@functools.cache
def cut_scripted():
    """:func:`_cut_torchscript` compiled by TorchScript (once, when first needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script says it is deprecated
        return torch.jit.script(_cut_torchscript)


def starts(time: int, size: int, step: int) -> list[int]:
    """Where the windows :func:`cut` keeps (weight 1) start, in input frames."""
    if time <= size:
        return [0]
    out = list(range(0, time - size + 1, step))
    if out[-1] != time - size:
        out.append(time - size)
    return out


def aggregate(scores: torch.Tensor, weights: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """``scores (batch, windows, classes)`` → ``(batch, classes)``: the weighted mean, or the max of the kept."""
    if how == "max":
        return torch.where(weights[None, :, None] > 0, scores, torch.full_like(scores, -torch.inf)).amax(1)
    return (scores * weights[None, :, None]).sum(1) / weights.sum()


__all__ = ["AGGREGATIONS", "HOP_FRACTION", "aggregate", "cut", "cut_scripted", "starts"]
