"""Issue-3 losses: cosine-distance difference, FitNet, KD, all-stage weights,
embedding compression gradients, single-label losses."""

import math

import numpy as np
import pytest
import torch

from eastmir.losses.cosine_distance_difference import CosineDistanceDifference
from eastmir.losses.fitnet import FitNet
from eastmir.losses.knowledge_distillation import knowledge_distillation
from eastmir.losses.prediction import cross_entropy
from eastmir.training.compression import LinearTeacherTransform


def test_cosine_distance_difference_hand_computed():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).unsqueeze(1)  # (3 samples, 1 frame, 2)
    teacher = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unsqueeze(1)
    # student pairs: d(0,1)=1, d(0,2)=d(1,2)=1-1/√2; teacher: 0, 1, 1
    expected = (1.0 + 2 * (1 - (1 - 1 / math.sqrt(2)))) / 3
    assert float(CosineDistanceDifference()(student, teacher)) == pytest.approx(expected, abs=1e-6)


def test_cosine_distance_difference_zero_for_scaled_copy_and_no_teacher_grad():
    x = torch.randn(6, 2, 5, requires_grad=True)
    t = (3 * x).detach().requires_grad_(True)
    loss = CosineDistanceDifference()(x, t)
    assert loss.item() < 1e-6
    CosineDistanceDifference()(x, torch.randn(6, 2, 7, requires_grad=True)).backward()
    assert x.grad is not None


def test_fitnet_zero_for_identical_features_and_projects_otherwise():
    x = torch.randn(4, 3, 8)
    assert float(FitNet(student_dim=8, teacher_dim=8)(x, x.clone())) == 0.0
    fit = FitNet(student_dim=8, teacher_dim=16)
    assert isinstance(fit.projection, torch.nn.Linear)
    teacher = torch.randn(4, 3, 16, requires_grad=True)
    loss = fit(x, teacher)
    loss.backward()
    assert teacher.grad is None and fit.projection.weight.grad is not None
    with torch.no_grad():
        ref = ((fit.projection(x) - teacher) ** 2).mean()
    assert loss.item() == pytest.approx(float(ref), rel=1e-6)


def test_binary_kd_hand_computed_with_tau_squared():
    zs, zt, tau = torch.tensor([[0.0]]), torch.tensor([[2.0]]), 2.0
    pt, ps = 1 / (1 + math.exp(-1.0)), 0.5
    kl = pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
    assert float(knowledge_distillation(zs, zt, temperature=tau)) == pytest.approx(kl * tau * tau, abs=1e-6)


def test_binary_kd_is_masked_and_zero_for_equal_logits():
    zs, zt = torch.randn(5, 4), torch.randn(5, 4)
    mask = torch.rand(5, 4) < 0.5
    mask[0, 0] = True
    other = torch.where(mask, zt, zt + 10.0)  # change only masked-out teacher entries
    assert torch.allclose(knowledge_distillation(zs, zt, mask), knowledge_distillation(zs, other, mask))
    assert float(knowledge_distillation(zt, zt, mask)) == pytest.approx(0.0, abs=1e-6)


def test_hard_kd_runs_and_equals_bce_on_teacher_decisions():
    from eastmir.losses.prediction import masked_binary_cross_entropy

    zs, zt = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3)
    mask = torch.rand(6, 3) < 0.7
    hard = knowledge_distillation(zs, zt, mask, hard=True)
    hard.backward()  # the authors' hard mode crashed here
    assert hard.item() == pytest.approx(masked_binary_cross_entropy(zs, (zt > 0).float(), mask).item(), abs=1e-6)


def test_softmax_kd_hand_computed():
    zs, zt, tau = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]]), 2.0
    ps = np.exp(zs.numpy()[0] / tau) / np.exp(zs.numpy()[0] / tau).sum()
    pt = np.exp(zt.numpy()[0] / tau) / np.exp(zt.numpy()[0] / tau).sum()
    expected = float((pt * np.log(pt / ps)).sum()) * tau * tau
    got = knowledge_distillation(zs, zt, temperature=tau, single_label=True)
    assert float(got) == pytest.approx(expected, abs=1e-6)
    assert int(knowledge_distillation(zs, zt, single_label=True, hard=True) > 0) == 1


def test_cross_entropy_matches_torch_for_one_hot():
    logits = torch.randn(7, 5)
    labels = torch.randint(0, 5, (7,))
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    assert torch.allclose(cross_entropy(logits, onehot), torch.nn.functional.cross_entropy(logits, labels))


def test_compression_l_teacher_updates_only_the_transformation():
    student_feature = torch.randn(8, 2, 16, requires_grad=True)
    teacher = torch.randn(8, 3, 64, requires_grad=True)
    transform = LinearTeacherTransform(64, 16, num_classes=5)
    compact, logits = transform(teacher)
    l_teacher = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(8, 5))
    l_teacher.backward()
    assert transform.transform.weight.grad is not None and transform.head.weight.grad is not None
    assert teacher.grad is None and student_feature.grad is None
    assert compact.shape == (8, 3, 16)
