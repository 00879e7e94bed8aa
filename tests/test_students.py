import pytest
import torch

from eastmir.registry import STUDENTS
from eastmir.students.cp_resnet import CPResNet, kernel_sizes
from eastmir.students.harmonic_cnn import HarmonicCNN
from eastmir.students.mobile_fcn import MobileFCN
from eastmir.students.short_chunk_cnn import ShortChunkCNN


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


# (name, kwargs, input for a 10 s OpenMIC-front-end clip, input for a short clip)
STUDENT_CASES = [
    ("mobile_fcn", {"n_mels": 128}, (128, 1001), (128, 100)),
    ("fcn", {"n_mels": 128}, (128, 1001), (128, 100)),
    ("cp_resnet", {}, (128, 1001), (128, 40)),
    ("short_chunk_cnn", {}, (128, 1001), (128, 60)),
    ("harmonic_cnn", {}, (160000,), (80000,)),
]


@pytest.mark.parametrize("name,kwargs,long,short", STUDENT_CASES, ids=[c[0] for c in STUDENT_CASES])
def test_every_student_forward_backward_long_and_short(name, kwargs, long, short):
    model = STUDENTS.build(name, num_classes=20, **kwargs)
    for shape in (long, short):
        x = torch.randn(2, *shape)
        out = model(x)
        assert out.logits.shape == (2, 20)
        assert [s.shape[-1] for s in out.stages] == list(model.stage_dims)
        frames = shape[-1] if model.input_key == "logmel" else shape[-1] // 256 + 1
        for stage, hop in zip(out.stages, model.stage_hops):
            assert abs(stage.shape[1] - frames / hop) <= 1.0, (name, stage.shape, frames, hop)
        (out.logits.sum() + sum(s.mean() for s in out.stages)).backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        model.zero_grad()


def test_cp_resnet_parameter_count_matches_paper():
    model = CPResNet(num_classes=20, rho=7, base_channels=128)
    assert model.backbone_parameters() == 5_524_352
    assert sum(p.numel() for p in model.parameters()) == 5_534_612
    assert sum(b.numel() for b in model.buffers()) == 16_155


def test_cp_resnet_rho_controls_kernels():
    assert kernel_sizes(7)[1] == ((3, 1, 1, 1), (1, 3, 3, 3))
    small = sum(p.numel() for p in CPResNet(num_classes=2, rho=3, base_channels=16).parameters())
    large = sum(p.numel() for p in CPResNet(num_classes=2, rho=11, base_channels=16).parameters())
    assert small < sum(p.numel() for p in CPResNet(num_classes=2, rho=7, base_channels=16).parameters()) < large


def test_cp_resnet_initialisation_does_not_depend_on_models_built_before():
    torch.manual_seed(0)
    first = CPResNet(num_classes=20, base_channels=16)
    torch.manual_seed(0)
    CPResNet(num_classes=20, base_channels=16)  # the authors' global block counter would change the next one
    torch.manual_seed(0)
    third = CPResNet(num_classes=20, base_channels=16)
    for a, b in zip(first.state_dict().values(), third.state_dict().values()):
        assert torch.equal(a, b)


def test_short_chunk_cnn_within_3_percent_of_published():
    assert ShortChunkCNN(num_classes=50).backbone_parameters() == 9_062_914  # 9.1 M published
    assert abs(9_062_914 / 9.1e6 - 1) < 0.03
    assert ShortChunkCNN(num_classes=50, shortcut_kernel=3).backbone_parameters() == 12_078_594  # Won et al.'s code


def test_harmonic_cnn_within_3_percent_of_published():
    model = HarmonicCNN(num_classes=50)
    assert model.backbone_parameters() == 3_618_701
    assert abs(3_618_701 / 3.6e6 - 1) < 0.03
    assert model.hstft.level == 128
    assert model.hstft.bw_q.requires_grad  # the learnable harmonic filterbank


def test_harmonic_filterbank_peaks_at_harmonic_centres():
    hstft = HarmonicCNN(num_classes=2).hstft
    fb = hstft.filterbank().detach()
    freqs = hstft.fft_freqs
    for band in (0, 200, 700):
        assert abs(float(freqs[fb[:, band].argmax()]) - float(hstft.centres[band])) <= 16000 / 513
