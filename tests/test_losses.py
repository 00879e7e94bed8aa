import dcor
import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from eastmir.losses.alignment import align_time
from eastmir.losses.distance_correlation import DistanceCorrelationLoss, squared_distance_correlation
from eastmir.losses.prediction import masked_binary_cross_entropy
from eastmir.registry import REGULARISERS


def test_distance_correlation_equals_dcor_biased():
    rng = np.random.default_rng(0)
    for n, cx, cy in [(16, 8, 32), (7, 128, 3), (32, 256, 512)]:
        x = rng.standard_normal((n, cx)).astype(np.float32)
        y = (rng.standard_normal((n, cy)) + 0.3 * np.tile(x[:, :1], (1, cy))).astype(np.float32)
        ours = squared_distance_correlation(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0]
        ref = dcor.distance_correlation_sqr(x.astype(np.float64), y.astype(np.float64))
        assert abs(float(ours) - ref) < 1e-5


def test_loss_is_one_minus_mean_over_aligned_frames():
    rng = np.random.default_rng(1)
    s = torch.from_numpy(rng.standard_normal((12, 2, 16)).astype(np.float32))
    t = torch.from_numpy(rng.standard_normal((12, 4, 24)).astype(np.float32))
    loss = DistanceCorrelationLoss()(s, t)
    # student frame k is repeated twice: frames (0, 0, 1, 1) against teacher 0..3
    ref = np.mean(
        [1 - dcor.distance_correlation_sqr(s[:, k // 2].double().numpy(), t[:, k].double().numpy()) for k in range(4)]
    )
    assert abs(float(loss) - ref) < 1e-5


def test_distance_correlation_finite_for_identical_samples():
    student = torch.ones(8, 3, 16, requires_grad=True)
    teacher = torch.randn(8, 3, 32)
    loss = DistanceCorrelationLoss()(student, teacher)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_distance_correlation_sends_no_gradient_to_teacher():
    student = torch.randn(8, 3, 16, requires_grad=True)
    teacher = torch.randn(8, 3, 32, requires_grad=True)
    DistanceCorrelationLoss()(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_distance_correlation_zero_for_linear_copy():
    x = torch.randn(16, 2, 8, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    loss = DistanceCorrelationLoss()(x, 3.0 * x @ q)  # orthogonal map and scale: distances proportional
    assert float(loss) < 1e-6


def test_regulariser_registry():
    assert isinstance(REGULARISERS.build("distance_correlation"), DistanceCorrelationLoss)


def test_align_time_repeats_shorter_then_crops():
    a = torch.arange(2.0).view(1, 2, 1)
    b = torch.zeros(1, 3, 4)
    a2, b2 = align_time(a, b)
    assert a2.shape == (1, 3, 1) and b2.shape == (1, 3, 4)
    assert a2.flatten().tolist() == [0.0, 0.0, 1.0]


def test_align_time_clip_level_teacher_repeated_to_every_frame():
    student = torch.randn(2, 5, 3)
    teacher = torch.randn(2, 1, 7)
    s, t = align_time(student, teacher)
    assert s.shape == (2, 5, 3) and t.shape == (2, 5, 7)
    assert torch.equal(t, teacher.expand(2, 5, 7))


def test_align_time_rejects_wrong_rank():
    with pytest.raises(ValueError, match="batch, time, channels"):
        align_time(torch.zeros(2, 3), torch.zeros(2, 3, 4))


def test_masked_bce_equals_sklearn_on_labelled_entries():
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.standard_normal((40, 6)))
    targets = torch.from_numpy((rng.random((40, 6)) < 0.4).astype(np.float64))
    mask = torch.from_numpy(rng.random((40, 6)) < 0.5)
    ours = masked_binary_cross_entropy(logits, targets, mask)
    probs = torch.sigmoid(logits)[mask].numpy()
    ref = log_loss(targets[mask].numpy(), probs, labels=[0, 1])
    assert abs(float(ours) - ref) < 1e-9


def test_masked_entries_change_nothing():
    logits = torch.randn(10, 4)
    targets = (torch.rand(10, 4) < 0.5).float()
    mask = torch.rand(10, 4) < 0.5
    other = torch.where(mask, targets, 1 - targets)  # flip every unlabelled target
    assert torch.equal(
        masked_binary_cross_entropy(logits, targets, mask), masked_binary_cross_entropy(logits, other, mask)
    )
    no_label = masked_binary_cross_entropy(logits, targets, torch.zeros_like(mask))
    assert float(no_label) == 0.0


@pytest.mark.parametrize("scale", [1e-6, 1e-5, 1e-3, 1.0, 1e2, 1e4])
def test_distance_correlation_is_scale_invariant(scale):
    """The issue's case: with ε = 1e-9 inside the square roots, features scaled by 1e-3 differed from
    dcor by 2.9e-3, by 1e-5 by 0.51."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 64))
    y = rng.standard_normal((16, 128)) + 0.5 * x[:, :1]
    ref = dcor.distance_correlation_sqr(x, y)
    for a, b in [(x * scale, y), (x * scale, y * scale), (x, y * scale)]:
        ours = squared_distance_correlation(torch.from_numpy(a).float()[None], torch.from_numpy(b).float()[None])
        assert abs(float(ours[0]) - ref) < 1e-4, (scale, float(ours[0]), ref)
    loss = DistanceCorrelationLoss()(torch.from_numpy(x * scale).float()[:, None], torch.from_numpy(y).float()[:, None])
    assert abs(float(loss) - (1 - ref)) < 1e-4


def test_distance_correlation_of_one_repeated_sample_is_zero_not_nan():
    x = torch.ones(6, 1, 4)
    assert float(squared_distance_correlation(x.transpose(0, 1), torch.randn(1, 6, 3))[0]) == 0.0


@pytest.mark.parametrize("name", ["distance_correlation", "cosine_distance_difference", "fitnet"])
def test_regularisers_refuse_options_they_do_not_have(name):
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        REGULARISERS.build(name, student_dim=8, teacher_dim=8, temprature=2)


# ---------------------------------------------------------------- bias-corrected distance correlation


@pytest.mark.parametrize(("n", "cx", "cy"), [(4, 2, 2), (8, 5, 3), (16, 256, 128), (32, 512, 512)])
def test_unbiased_distance_correlation_equals_dcor(n, cx, cy):

    from eastmir.losses.distance_correlation import u_squared_distance_correlation

    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, cx)), rng.standard_normal((n, cy))
    y_related = np.concatenate([x[:, :2] ** 2, y[:, :1]], axis=1)
    for other in (y, y_related):
        ours = u_squared_distance_correlation(torch.from_numpy(x)[None], torch.from_numpy(other)[None]).item()
        assert ours == pytest.approx(dcor.u_distance_correlation_sqr(x, other), abs=1e-6)
    if cx >= 256:  # where the biased estimator saturates, the unbiased one stays near 0 for unrelated features
        assert dcor.distance_correlation_sqr(x, y) > 0.95 and abs(ours) < 0.3


def test_unbiased_distance_correlation_is_scale_invariant_with_finite_gradients():
    from eastmir.losses.distance_correlation import DistanceCorrelationLoss

    loss = DistanceCorrelationLoss(estimator="unbiased")
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(12, 5, 64, generator=g, dtype=torch.float64), torch.randn(12, 5, 32, generator=g)
    student[1] = student[0]  # two identical samples: a zero distance
    reference = loss(student, teacher.double())
    for scale in (1e-6, 1e-3, 1e2, 1e4):
        x = (student * scale).requires_grad_(True)
        value = loss(x, teacher.double() * scale)
        value.backward()
        assert value.item() == pytest.approx(reference.item(), abs=1e-9) and torch.isfinite(x.grad).all()
    few = loss(torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 5, 4))  # below 4 samples: R² counts as 0
    assert few.item() == 1.0


def test_the_unbiased_estimator_s_batch_size_is_checked_with_the_config(workdir):
    from eastmir.config import load_config
    from eastmir.errors import ConfigError

    cfg = load_config("synth/east_final", ["distillation.feature.estimator=unbiased"], workdir=workdir)
    assert cfg.feature.options["estimator"] == "unbiased"
    with pytest.raises(ConfigError, match="estimator: unbiased needs at least 4 clips per batch"):
        load_config(
            "synth/east_final", ["distillation.feature.estimator=unbiased", "data.batch_size=3"], workdir=workdir
        )
    with pytest.raises(ConfigError, match=r"distillation\.feature\.estimator"):
        load_config("synth/east_final", ["distillation.feature.estimator=jackknife"], workdir=workdir)


def test_east_final_trains_with_the_unbiased_estimator(small_synth, small_synth_embeddings, small_config):
    import json

    from eastmir import pipeline

    cfg = small_config("east_final", "name=unbiased_dc", "distillation.feature.estimator=unbiased")
    metrics = json.loads((pipeline.fit(cfg, progress=False) / "metrics.json").read_text())
    assert 0 < metrics["test"]["mAP"] <= 1 and metrics["steps"] > 0
