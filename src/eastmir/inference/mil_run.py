"""Runs a Core ML program (the ML program inside an ``.mlpackage``) on any OS, to check an export where Apple's
runtime does not run.

Core ML predicts only on macOS and iOS. ``coremltools`` reads a saved package back into its intermediate
representation (MIL: operations, their constants, the weights from the package's weight file); this module
evaluates those operations one by one with NumPy (PyTorch for convolutions and pooling), following the
MIL operation set's definitions. A result the program types as float16 is rounded to float16 after every
operation, as the device stores it (the device may accumulate inside an operation in float16 where this
accumulates in float32). An operation it does not know stops the run with :class:`UncheckableOperation`,
never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class UncheckableOperation(Exception):
    """The program holds an operation this interpreter does not evaluate."""


def _axis(axis: Any, rank: int) -> int:
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    index = []
    for i in range(x.ndim):
        b = None if begin_mask is not None and begin_mask[i] else int(begin[i])
        e = None if end_mask is not None and end_mask[i] else int(end[i])
        s = 1 if stride is None else int(stride[i])
        index.append(int(begin[i]) if squeeze_mask is not None and squeeze_mask[i] else slice(b, e, s))
    return x[tuple(index)]


def _pad(x, pad, mode="constant", constant_val=0.0):
    pairs = np.asarray(pad, int).reshape(-1, 2)
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(p) for p in pairs]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[str(mode)])


def _spatial_pad(pad_type, pad, kernel, strides, dilations, size) -> list[int]:
    """``[begin, end]`` per spatial dimension, in order."""
    if pad_type == "custom":
        return [int(p) for p in pad]
    if pad_type == "valid":
        return [0] * (2 * len(kernel))
    if pad_type in ("same", "same_lower"):
        out = []
        for k, s, d, n in zip(kernel, strides, dilations, size):
            total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
            low = total - total // 2 if pad_type == "same_lower" else total // 2
            out += [low, total - low]
        return out
    raise UncheckableOperation(f"padding {pad_type}")


def _torch_pad(x: torch.Tensor, pairs: list[int], value: float) -> torch.Tensor:
    torch_order = []  # F.pad wants the last dimension first
    for i in reversed(range(len(pairs) // 2)):
        torch_order += [pairs[2 * i], pairs[2 * i + 1]]
    return F.pad(x, torch_order, value=value) if any(torch_order) else x


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    spatial = x.ndim - 2
    strides = [1] * spatial if strides is None else [int(s) for s in strides]
    dilations = [1] * spatial if dilations is None else [int(d) for d in dilations]
    pairs = _spatial_pad(pad_type, pad, weight.shape[2:], strides, dilations, x.shape[2:])
    xt = _torch_pad(torch.from_numpy(np.ascontiguousarray(x, np.float32)), pairs, 0.0)
    w = torch.from_numpy(np.ascontiguousarray(weight, np.float32))
    b = None if bias is None else torch.from_numpy(np.asarray(bias, np.float32))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    return conv(xt, w, b, strides, 0, dilations, int(groups)).numpy()


def _pool(kind: str):
    def pool(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False, exclude_padding_from_average=False):
        spatial = x.ndim - 2
        kernel, strides = [int(k) for k in kernel_sizes], [int(s) for s in strides]
        pairs = _spatial_pad(pad_type, pad, kernel, strides, [1] * spatial, x.shape[2:])
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if kind == "max":
            xt = _torch_pad(xt, pairs, float("-inf"))
            return {1: F.max_pool1d, 2: F.max_pool2d}[spatial](
                xt, kernel, strides, 0, ceil_mode=bool(ceil_mode)
            ).numpy()
        if any(pairs) and exclude_padding_from_average:
            raise UncheckableOperation("average pooling that excludes its padding")
        xt = _torch_pad(xt, pairs, 0.0)
        return {1: F.avg_pool1d, 2: F.avg_pool2d}[spatial](xt, kernel, strides, 0, ceil_mode=bool(ceil_mode)).numpy()

    return pool


def _reduce(how: Callable):
    def reduce(x, axes=None, keep_dims=False):
        axes = None if axes is None else tuple(_axis(a, x.ndim) for a in np.atleast_1d(axes))
        return how(x, axis=axes, keepdims=bool(keep_dims))

    return reduce


def _softmax(x, axis=-1):
    shifted = x - x.max(axis=int(axis), keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=int(axis), keepdims=True)


DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": bool, "int8": np.int8}


def _matmul(x, y, transpose_x=False, transpose_y=False):
    return np.matmul(np.swapaxes(x, -1, -2) if transpose_x else x, np.swapaxes(y, -1, -2) if transpose_y else y)


OPS: dict[str, Callable[..., np.ndarray]] = {
    "cast": lambda x, dtype: np.asarray(x).astype(DTYPES[str(dtype)]),
    "identity": lambda x: x,
    "pad": _pad,
    "reshape": lambda x, shape: np.reshape(x, [int(s) for s in shape]),
    "slice_by_index": _slice_by_index,
    "concat": lambda values, axis, interleave=False: np.concatenate(values, axis=int(axis)),
    "add": lambda x, y: np.add(x, y),
    "sub": lambda x, y: np.subtract(x, y),
    "mul": lambda x, y: np.multiply(x, y),
    "real_div": lambda x, y: np.divide(x, y),
    "pow": lambda x, y: np.power(x, y),
    "maximum": lambda x, y: np.maximum(x, y),
    "minimum": lambda x, y: np.minimum(x, y),
    "matmul": _matmul,
    "transpose": lambda x, perm: np.transpose(x, [_axis(p, x.ndim) for p in perm]),
    "log": lambda x, epsilon=0.0: np.log(x + epsilon),
    "exp": lambda x: np.exp(x),
    "sqrt": lambda x: np.sqrt(x),
    "square": lambda x: np.square(x),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
    "squeeze": lambda x, axes=None: np.squeeze(x, None if axes is None else tuple(int(a) for a in axes)),
    "less": lambda x, y: np.less(x, y),
    "less_equal": lambda x, y: np.less_equal(x, y),
    "greater": lambda x, y: np.greater(x, y),
    "greater_equal": lambda x, y: np.greater_equal(x, y),
    "equal": lambda x, y: np.equal(x, y),
    "fill_like": lambda ref_tensor, value=0.0: np.full(np.shape(ref_tensor), value, np.float32),
    "fill": lambda shape, value=0.0: np.full([int(s) for s in shape], value, np.float32),
    "tile": lambda x, reps: np.tile(x, [int(r) for r in reps]),
    "select": lambda cond, a, b: np.where(cond, a, b),
    "conv": _conv,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": lambda x: np.tanh(x),
    "abs": lambda x: np.abs(x),
    "floor": lambda x: np.floor(x),
    "ceil": lambda x: np.ceil(x),
    "sin": lambda x: np.sin(x),
    "cos": lambda x: np.cos(x),
    "rsqrt": lambda x, epsilon=1e-12: 1 / np.sqrt(x + epsilon),
    "inverse": lambda x, epsilon=1e-4: 1 / (x + epsilon),
    "clip": lambda x, alpha, beta: np.clip(x, alpha, beta),
    "softmax": _softmax,
    "max_pool": _pool("max"),
    "avg_pool": _pool("avg"),
    "reduce_mean": _reduce(np.mean),
    "reduce_max": _reduce(np.max),
    "reduce_sum": _reduce(np.sum),
    "reduce_min": _reduce(np.min),
    "linear": lambda x, weight, bias=None: np.matmul(x, np.asarray(weight).T) + (0 if bias is None else bias),
}


def _compute(value: Any) -> Any:
    """A constant or result as this interpreter computes with it: float16 values widened to float32."""
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float16 else array


def run_program(program: Any, inputs: dict[str, np.ndarray], function: str = "main") -> dict[str, np.ndarray]:
    """Evaluate ``program``'s ``function`` (a ``coremltools`` MIL ``Program``) on ``inputs`` (name → array);
    returns its outputs by name. Raises :class:`UncheckableOperation` on an operation it does not know."""
    from coremltools.converters.mil.mil import types

    body = program.functions[function]
    values: dict[str, Any] = {name: np.asarray(inputs[name], np.float32) for name in body.inputs}

    def value(var: Any) -> Any:
        if isinstance(var, (list, tuple)):
            return [value(v) for v in var]
        return values[var.name] if var.name in values else _compute(var.val)

    for op in body.operations:
        if op.op_type == "const":
            values[op.outputs[0].name] = _compute(op.outputs[0].val)
            continue
        run = OPS.get(op.op_type)
        if run is None:
            raise UncheckableOperation(op.op_type)
        result = run(**{name: value(var) for name, var in op.inputs.items()})
        for var, out in zip(op.outputs, result if isinstance(result, tuple) else (result,)):
            out = np.asarray(out)
            if var.dtype == types.fp16:  # stored as float16 on the device
                out = out.astype(np.float16).astype(np.float32)
            elif out.dtype == np.float64:
                out = out.astype(np.float32)
            values[var.name] = out
    return {var.name: values[var.name] for var in body.outputs}
