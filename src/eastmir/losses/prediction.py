"""Prediction losses ``L_pred``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on sigmoid outputs, averaged over labelled entries only.

    ``logits``, ``targets`` (in [0, 1]) and ``mask`` (bool or weights in
    [0, 1]) are ``(batch, classes)``. Unlabelled entries (OpenMIC's missing
    labels) contribute nothing; a batch with no labelled entry gives 0.
    """
    weights = mask.to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return (per_entry * weights).sum() / weights.sum().clamp_min(1.0)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax cross-entropy for single-label tasks (ESC-50, FMA-small).

    ``targets (batch, classes)`` are one-hot or soft (mixup) class
    probabilities; ``mask`` is ignored (single-label clips are fully labelled).
    """
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
