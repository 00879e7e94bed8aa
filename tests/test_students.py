import pytest
import torch

from eastmir.registry import STUDENTS
from eastmir.students.mobile_fcn import MobileFCN


@pytest.mark.parametrize("n_mels", [96, 128])
def test_mobile_fcn_parameter_count_matches_authors_code(n_mels):
    model = MobileFCN(num_classes=50, n_mels=n_mels)
    assert model.backbone_parameters() == 301_248
    assert sum(p.numel() for p in model.parameters()) == 314_098
    assert sum(b.numel() for b in model.buffers()) == 4_750


@pytest.mark.parametrize("n_mels,frames", [(96, 1457), (128, 200), (96, 96)])
def test_mobile_fcn_shapes_and_stage_hops(n_mels, frames):
    model = MobileFCN(num_classes=20, n_mels=n_mels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, n_mels, frames))
    assert out.logits.shape == (2, 20)
    assert [s.shape[-1] for s in out.stages] == list(model.stage_dims)
    for stage, hop in zip(out.stages, model.stage_hops):
        assert stage.shape[:2] == (2, frames // hop)


def test_mobile_fcn_rejects_other_mel_counts():
    with pytest.raises(ValueError, match="96 or 128"):
        MobileFCN(num_classes=5, n_mels=64)


def test_same_seed_same_initialisation():
    torch.manual_seed(3)
    a = MobileFCN(num_classes=5)
    MobileFCN(num_classes=5)  # building another model in between changes nothing
    torch.manual_seed(3)
    b = MobileFCN(num_classes=5)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_unknown_student_lists_valid_names():
    with pytest.raises(KeyError, match="mobile_fcn"):
        STUDENTS.get("mobile_fnc")
