"""The optimisers and learning-rate schedulers a run config names (``optimizer.name``, ``scheduler.name``),
registered in :data:`eastmir.registry.OPTIMISERS` and :data:`~eastmir.registry.SCHEDULERS`: an optimiser takes
the trainable parameters and its section's settings, a scheduler the optimiser and its section's settings; the
scheduler steps on the validation loss (Lightning's ``monitor``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import Parameter

from eastmir.registry import OPTIMISERS, SCHEDULERS


@OPTIMISERS.register("adam")
def adam(
    params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """Adam (``momentum`` is not one of its settings and is ignored)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMISERS.register("sgd")
def sgd(params: Iterable[Parameter], lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@SCHEDULERS.register("plateau")
def plateau(optimizer: torch.optim.Optimizer, factor: float, patience: int) -> torch.optim.lr_scheduler.LRScheduler:
    """ReduceLROnPlateau on the validation loss (both papers): the rate times ``factor`` after ``patience``
    epochs without a lower loss."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)
