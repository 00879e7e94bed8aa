"""The optimisers a run config names (``optimizer.name``), registered in
:data:`eastmir.registry.OPTIMISERS`: each takes the trainable parameters and the ``optimizer:`` section."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import Parameter

from eastmir.registry import OPTIMISERS


@OPTIMISERS.register("adam")
def adam(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """Adam (``momentum`` is not one of its settings and is ignored)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMISERS.register("sgd")
def sgd(params: Iterable[Parameter], lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
