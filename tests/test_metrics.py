import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from eastmir.metrics import MaskedMultilabelMetrics, masked_metrics


def random_case(seed, n=300, c=7):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, c, generator=g)
    targets = (torch.rand(n, c, generator=g) < 0.3).float()
    probs = (0.5 * probs + 0.5 * targets * torch.rand(n, c, generator=g)).clamp(0, 1)  # informative scores
    mask = torch.rand(n, c, generator=g) < 0.6
    return probs, targets, mask


def sklearn_reference(probs, targets, mask):
    aps, aucs, f1s = [], [], []
    for c in range(probs.shape[1]):
        sel = mask[:, c].numpy()
        t, p = targets[sel, c].numpy() > 0.5, probs[sel, c].numpy()
        if not sel.any():
            continue
        if t.any():
            aps.append(average_precision_score(t, p))
        if t.any() and not t.all():
            aucs.append(roc_auc_score(t, p))
        f1s.append(f1_score(t, p > 0.4, average="macro", labels=[False, True], zero_division=1.0))
    return np.mean(aps), np.mean(aucs), np.mean(f1s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_metrics_equal_sklearn(seed):
    probs, targets, mask = random_case(seed)
    ours = masked_metrics(probs.double(), targets, mask)
    ap, auc, f1 = sklearn_reference(probs.double(), targets, mask)
    assert ours["mAP"] == pytest.approx(ap, abs=1e-6)
    assert ours["roc_auc"] == pytest.approx(auc, abs=1e-6)
    assert ours["f1"] == pytest.approx(f1, abs=1e-9)


def test_masked_entries_do_not_count():
    probs, targets, mask = random_case(3)
    flipped = torch.where(mask, targets, 1 - targets)
    assert masked_metrics(probs, targets, mask) == masked_metrics(probs, flipped, mask)


def test_defined_when_a_class_has_no_negative_or_no_positive():
    probs, targets, mask = random_case(4, c=4)
    targets[:, 0] = 1.0  # no negative in class 0
    targets[:, 1] = 0.0  # no positive in class 1
    probs[:, 1] = 0.1  # ... and no positive prediction (the authors' F1 gives NaN here)
    mask[:, 2] = False  # class 2 entirely unlabelled
    out = masked_metrics(probs, targets, mask)
    assert all(np.isfinite(v) for v in out.values())

    def sel(c):
        m = mask[:, c].numpy()
        return targets[m, c].numpy() > 0.5, probs[m, c].numpy()

    (t0, p0), (t3, p3) = sel(0), sel(3)
    # mAP over classes with a positive (0 and 3), ROC-AUC over classes with both (3)
    assert out["mAP"] == pytest.approx(
        (average_precision_score(t0, p0) + average_precision_score(t3, p3)) / 2, abs=1e-6
    )
    assert out["roc_auc"] == pytest.approx(roc_auc_score(t3, p3), abs=1e-6)
    f1 = [
        f1_score(t, p > 0.4, average="macro", labels=[False, True], zero_division=1.0)
        for t, p in (sel(0), sel(1), sel(3))
    ]
    assert f1[1] == 1.0  # class 1: nothing to find and nothing wrongly found
    assert out["f1"] == pytest.approx(np.mean(f1), abs=1e-9)


def test_torchmetrics_wrapper_accumulates_batches():
    probs, targets, mask = random_case(5)
    logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6))
    metric = MaskedMultilabelMetrics()
    for chunk in range(0, 300, 64):
        metric.update(logits[chunk : chunk + 64], targets[chunk : chunk + 64], mask[chunk : chunk + 64])
    whole = masked_metrics(torch.sigmoid(logits), targets, mask)
    got = metric.compute()
    for k in whole:
        assert got[k] == pytest.approx(whole[k], abs=1e-6)


def test_chosen_thresholds_maximise_each_class_f1_on_labelled_samples():
    import numpy as np
    from sklearn.metrics import f1_score

    from eastmir.metrics import choose_thresholds

    rng = np.random.default_rng(0)
    probs = np.round(rng.random((300, 5)), 2)  # ties, as real scores have
    targets = (rng.random((300, 5)) < probs).astype(float)
    mask = rng.random((300, 5)) < 0.8
    targets[:, 4], mask[:, 3] = 0.0, False  # a class with no positive, a class with no label
    chosen = choose_thresholds(probs, targets, mask)
    for c in range(3):
        p, t = probs[mask[:, c], c], targets[mask[:, c], c] > 0.5
        best = max(f1_score(t, p >= x) for x in np.unique(p))
        assert f1_score(t, p >= chosen[c]) == best
    assert chosen[3] == 0.5 and chosen[4] == 0.5
