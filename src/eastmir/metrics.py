"""Masked multi-label metrics (docs/method.md, metrics).

Every metric is computed per class over the **labelled** samples of that
class only, then averaged over classes:

- ``mAP``: average precision (area under the precision-recall curve, the
  step-wise definition of scikit-learn), over classes with at least one
  positive labelled sample.
- ``roc_auc``: area under the ROC curve, over classes with both a positive
  and a negative labelled sample.
- ``f1``: OpenMIC's macro F1: per class, the F1 of the positive label and the
  F1 of the negative label at a threshold of 0.4 on the probability,
  averaged; then the mean over classes with any labelled sample. A label
  that is neither present nor predicted scores 1 (nothing to find, nothing
  wrongly found), so the result is never NaN (the authors' code returns NaN).

A class that is undefined for a metric is left out of that metric's mean
rather than counted as 0 or NaN; when no class is defined the metric is NaN.

:class:`MaskedMultilabelMetrics` keeps its state in torchmetrics ``cat``
states, which Lightning synchronises across processes, and computes once
per epoch (no host sync per step).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

F1_THRESHOLD = 0.4


def _binary_f1(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    tp = (pred & true).sum().double()
    fp = (pred & ~true).sum().double()
    fn = (~pred & true).sum().double()
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.ones((), dtype=torch.float64))


def masked_metrics(
    probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, threshold: float = F1_THRESHOLD
) -> dict[str, float]:
    """``probs``, ``targets``, ``mask`` ``(samples, classes)`` → ``{"mAP", "roc_auc", "f1"}``.

    ``targets`` are confidences: positive when > 0.5. The F1 threshold is compared in the probabilities'
    own precision (a float32 0.4 is not above a threshold of 0.4, as in the authors' code).
    """
    given = probs.detach().cpu()
    probs, mask = given.double(), mask.detach().bool().cpu()
    positive = targets.detach().cpu() > 0.5
    aps, aucs, f1s = [], [], []
    for c in range(probs.shape[1]):
        sel = mask[:, c]
        if not sel.any():
            continue
        p, t = probs[sel, c], positive[sel, c]
        n_pos = int(t.sum())
        if n_pos > 0:
            aps.append(float(binary_average_precision(p, t.long())))
        if 0 < n_pos < len(t):
            aucs.append(float(binary_auroc(p, t.long())))
        hit = given[sel, c] > threshold
        f1s.append(float((_binary_f1(hit, t) + _binary_f1(~hit, ~t)) / 2))

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    return {"mAP": mean(aps), "roc_auc": mean(aucs), "f1": mean(f1s)}


def per_class_average_precision(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> list[float | None]:
    """Each class's average precision over its labelled samples, ``None`` without a labelled positive.

    ``probs``, ``targets`` (positive when > 0.5) and ``mask`` are ``(samples, classes)``; the mean of the
    defined values is :func:`masked_metrics`' ``mAP``.
    """
    probs, positive, mask = torch.as_tensor(probs).double(), torch.as_tensor(targets) > 0.5, torch.as_tensor(mask)
    out: list[float | None] = []
    for c in range(probs.shape[1]):
        sel = mask[:, c].bool()
        t = positive[sel, c]
        out.append(float(binary_average_precision(probs[sel, c], t.long())) if t.any() else None)
    return out


class MaskedMultilabelMetrics(Metric):
    """torchmetrics wrapper around :func:`masked_metrics`; ``update(logits, targets, mask)``."""

    full_state_update = False

    def __init__(self, threshold: float = F1_THRESHOLD, keep_per_class: bool = False) -> None:
        """``keep_per_class``: :meth:`compute` also keeps each class's AP in ``per_class_ap`` (the test split's,
        for the report's bars, without a second pass over the clips)."""
        super().__init__()
        self.threshold = threshold
        self.keep_per_class = keep_per_class
        self.per_class_ap: list[float | None] | None = None
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("mask", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> None:
        self.probs.append(torch.sigmoid(logits.detach().float()))
        self.targets.append(targets.detach().float())
        self.mask.append(mask.detach().bool())

    def compute(self) -> dict[str, float]:
        def cat(x):
            return torch.cat(x) if isinstance(x, list) else x

        probs, targets, mask = cat(self.probs), cat(self.targets), cat(self.mask)  # every process's clips
        if self.keep_per_class:
            arrays = (t.cpu().numpy() for t in (probs, targets, mask))
            self.per_class_ap = per_class_average_precision(*arrays)
        return masked_metrics(probs, targets, mask, self.threshold)


class SingleLabelMetrics(Metric):
    """Accuracy for single-label tasks (ESC-50, FMA-small); ``update(logits, targets one-hot, mask)``."""

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchmetrics.classification import MulticlassAccuracy

        self.accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.accuracy.update(logits.detach(), targets.argmax(dim=1))

    def compute(self) -> dict[str, float]:
        return {"accuracy": float(self.accuracy.compute())}

    def reset(self) -> None:
        super().reset()
        self.accuracy.reset()


def choose_thresholds(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class decision thresholds ``(classes,)`` that maximise each class's F1 on labelled samples.

    ``probs``, ``targets`` (positive when > 0.5) and ``mask`` are ``(samples, classes)``.
    A class is predicted when its probability is ``>=`` its threshold; the
    threshold is the lowest probability of the best cut. A class without a
    labelled positive and a labelled negative keeps ``default``.
    """
    probs, positive, mask = np.asarray(probs, np.float64), np.asarray(targets) > 0.5, np.asarray(mask, bool)
    out = np.full(probs.shape[1], default)
    for c in range(probs.shape[1]):
        p, t = probs[mask[:, c], c], positive[mask[:, c], c]
        if t.all() or not t.any():
            continue
        order = np.argsort(-p, kind="stable")
        p, t = p[order], t[order]
        last = np.r_[np.flatnonzero(p[1:] != p[:-1]), len(p) - 1]  # the end of each run of equal scores
        tp = np.cumsum(t)[last]
        fp = (last + 1) - tp
        f1 = 2 * tp / (2 * tp + fp + (t.sum() - tp))
        out[c] = p[last[int(np.argmax(f1))]]
    return out
