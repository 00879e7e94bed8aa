"""eastmir against arrays the authors' own code computed (tests/data/golden, see its README): the front end and
the regularisers. Where eastmir keeps another choice on purpose, the test checks the documented relation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from eastmir.frontend import FrontendConfig, LogMelFrontend, mel_filterbank
from eastmir.losses.cosine_distance_difference import CosineDistanceDifference
from eastmir.losses.distance_correlation import DistanceCorrelationLoss
from eastmir.losses.knowledge_distillation import knowledge_distillation

GOLDEN = Path(__file__).parent / "data" / "golden"
# the authors' featurizer settings (their config/openmic and config/magna files), and their pipeline's choices
AUTHORS = {"preemphasis": 0.97, "window": "symmetric", "pad_mode": "reflect"}
SETTINGS = {
    "openmic": FrontendConfig(sample_rate=32000, n_mels=128, fmax=16000.0, **AUTHORS),
    "magna": FrontendConfig(sample_rate=16000, n_mels=96, fmax=8000.0, **AUTHORS),
}


@pytest.fixture(scope="module")
def front_end():
    return np.load(GOLDEN / "front_end.npz")


def _ours(front_end, dataset: str, dtype: torch.dtype) -> np.ndarray:
    config = SETTINGS[dataset]
    wave = torch.from_numpy(front_end[f"{dataset}.wave{config.sample_rate // 1000}k"]).to(dtype)
    out = LogMelFrontend(config).to(dtype)(wave[None])[0].numpy()
    assert out.shape == front_end[f"{dataset}.logmel"].shape == (config.n_mels, config.n_frames(len(wave)))
    return out


def test_the_authors_front_end_settings_give_their_log_mel(front_end):
    """Their README: an independent float64 port matched both log-mels to 1.2e-4 at worst and 3e-5 at the
    99.9th percentile (the float32 rounding of their own run); ours in float64 does the same."""
    errors = np.concatenate(
        [np.abs(_ours(front_end, d, torch.float64) - front_end[f"{d}.logmel"]).ravel() for d in SETTINGS]
    )
    assert errors.max() <= 1.2e-4 and np.quantile(errors, 0.999) <= 3e-5


@pytest.mark.parametrize("dataset", ["openmic", "magna"])
def test_in_float32_too(dataset, front_end):
    """In float32 the FFT's rounding depends on the CPU's MKL kernels: on an AMD EPYC (AVX2) the MTAT chirp's
    low bands differ by up to 2.1e-4 (99.9th percentile 5.0e-5), the OpenMIC clip by 1.2e-4 (2.7e-5)."""
    error = np.abs(_ours(front_end, dataset, torch.float32) - front_end[f"{dataset}.logmel"])
    assert error.max() < 3e-4 and np.quantile(error, 0.999) < 6e-5


@pytest.mark.parametrize("dataset", ["openmic", "magna"])
def test_the_filterbank_is_kaldi_s(dataset, front_end):
    """Their mel basis is torchaudio's Kaldi filterbank without the Nyquist bin (which they pad with zero)."""
    c = SETTINGS[dataset]
    ours = mel_filterbank(c.n_fft, c.sample_rate, c.n_mels, c.fmin, c.fmax, scale=c.mel_scale).numpy().T
    expected = front_end[f"{dataset}.mel_basis"]
    assert np.abs(ours[:, :512] - expected).max() < 1.3e-5
    assert np.all(ours[:, 512] == 0)  # the Nyquist bin: 0, as their appended column


@pytest.mark.parametrize("setting", ["preemphasis", "window", "pad_mode"])
def test_each_of_the_authors_settings_matters(setting, front_end):
    """The default front end (eastmir's first) differs from theirs; each setting alone moves the output."""
    config = SETTINGS["magna"]
    wave = torch.from_numpy(front_end["magna.wave16k"])[None]
    expected = front_end["magna.logmel"]
    default = FrontendConfig.__dataclass_fields__[setting].default
    changed = FrontendConfig(**{**config.__dict__, setting: default})
    ours = LogMelFrontend(changed)(wave)[0].numpy()
    width = min(ours.shape[-1], expected.shape[-1])
    assert np.abs(ours[:, :width] - expected[:, :width]).max() > 1e-3


def test_silence_sits_at_the_log_floor(front_end):
    """The golden MTAT chirp is exactly 0 from 4.5 s on: (ln 1e-5 + 3.7) / 3.1 = -2.5202985 there."""
    expected = front_end["magna.logmel"]
    assert SETTINGS["magna"].silence == pytest.approx(-2.5202985, abs=1e-7)
    assert np.allclose(expected[:, -5:], SETTINGS["magna"].silence, atol=1e-6)


def test_the_paper_recipes_use_the_authors_front_end(tmp_path):
    """The OpenMIC and MagnaTagATune recipes are the authors' settings, and so is synth (MagnaTagATune's);
    a config that names none of the three settings gets eastmir's first front end."""
    from eastmir.config import load_config

    for name, dataset in (("openmic/east_final-passt", "openmic"), ("magnatagatune/baseline", "magna")):
        assert load_config(name, workdir=tmp_path).frontend == SETTINGS[dataset]
    assert load_config("synth/baseline", workdir=tmp_path).frontend == SETTINGS["magna"]
    assert FrontendConfig().preemphasis == 0.0 and FrontendConfig().window == "periodic"


def test_the_new_settings_leave_the_default_front_end_s_store_entries_where_they_were():
    """The store keys log-mels by the front end's settings: at their defaults the three new settings are left
    out, so entries made before they existed stay valid; set, they key other entries."""
    before = ["sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "mel_scale"]
    before += ["log_eps", "norm_shift", "norm_scale"]
    assert list(FrontendConfig().identity()) == before
    assert set(SETTINGS["magna"].identity()) == {*before, "preemphasis", "window", "pad_mode"}
    assert FrontendConfig().cache_key() != FrontendConfig(window="symmetric").cache_key()


# ----------------------------------------------------------------------------- losses (float64)


@pytest.fixture(scope="module")
def losses():
    return np.load(GOLDEN / "losses.npz")


def _value_and_gradient(loss, student: np.ndarray, teacher: np.ndarray) -> tuple[float, np.ndarray]:
    x = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    value = loss(x, torch.tensor(teacher, dtype=torch.float64))
    value.backward()
    return value.item(), x.grad.numpy()


def _time_mean(loss):
    """Their stage without expand keys: the features averaged over time first (one ``(batch, channels)`` matrix)."""
    return lambda s, t: loss(s.mean(dim=1, keepdim=True), t.mean(dim=1, keepdim=True))


@pytest.mark.parametrize("case", ["A_dc", "L_dc", "A_dc_mean"])
def test_distance_correlation_equals_theirs_but_for_their_epsilons(case, losses):
    """Theirs adds 1e-12 inside every distance's square root and 1e-9 under the denominator's; ours adds none
    (an exact zero distance gets a zero gradient instead). Their README: dropping the epsilons costs about
    2e-7 on L_dc; measured here up to 4.6e-7 relative on the value and 4.4e-7 on the gradient."""
    data = case.split("_")[0]
    loss = DistanceCorrelationLoss()
    value, gradient = _value_and_gradient(
        _time_mean(loss) if case.endswith("mean") else loss, losses[f"{data}.student"], losses[f"{data}.teacher"]
    )
    assert value == pytest.approx(float(losses[f"{case}.loss"]), rel=1e-6)
    expected = losses[f"{case}.grad.output_3"]
    assert np.abs(gradient - expected).max() <= 1e-6 * np.abs(expected).max()


@pytest.mark.parametrize("case", ["A_cos", "L_cos", "A_cos_mean"])
def test_cosine_distance_difference_is_theirs_times_n_over_n_minus_1(case, losses):
    """Theirs averages |S_s − S_t| over all N² pairs of a frame, the zero diagonal and both triangles included;
    ours over the N(N−1)/2 distinct pairs: ours = theirs · N / (N − 1), to the last bits (float64)."""
    data = case.split("_")[0]
    student, teacher = losses[f"{data}.student"], losses[f"{data}.teacher"]
    n = student.shape[0]
    loss = CosineDistanceDifference()
    value, gradient = _value_and_gradient(_time_mean(loss) if case.endswith("mean") else loss, student, teacher)
    assert value * (n - 1) / n == pytest.approx(float(losses[f"{case}.loss"]), rel=1e-12)
    assert np.allclose(gradient * (n - 1) / n, losses[f"{case}.grad.output_3"], rtol=1e-10, atol=1e-18)


def test_distance_correlation_s_edge_cases(losses):
    """A constant student and a batch of one: loss exactly 1 and gradient exactly 0, as theirs; identical
    features: 0 (theirs 3e-11, from its epsilons)."""
    x, constant = losses["E.x"], losses["E.const"]
    loss = DistanceCorrelationLoss()
    for student, teacher, case in ((constant, x, "E_dc_constant_student"), (x[:1], x[:1], "E_dc_batch_of_one")):
        value, gradient = _value_and_gradient(loss, student, teacher)
        assert value == float(losses[f"{case}.loss"]) == 1.0 and not gradient.any()
    value, _ = _value_and_gradient(loss, x, x)
    assert abs(value) < 1e-15 and float(losses["E_dc_identical.loss"]) < 1e-10


@pytest.mark.parametrize(("case", "tau"), [("kd", 2.0), ("kd_tau1", 1.0), ("kdx", 2.0)])
def test_knowledge_distillation_equals_theirs(case, tau, losses):
    """Masked binary KL × τ² on the labelled entries. Theirs adds 1e-9 inside its logs, which only matters where
    a probability rounds to 1: the extreme scores of ``kdx`` give the same loss (24.476), but there their
    gradient is the epsilon's, ours the exact one (checked against autograd of the exact formula)."""
    data = "kdx" if case == "kdx" else "kd"
    s = torch.tensor(losses[f"{data}.scores_s"], requires_grad=True)
    t, mask = torch.tensor(losses[f"{data}.scores_t"]), torch.tensor(losses[f"{data}.mask"])
    value = knowledge_distillation(s, t, mask, temperature=tau)
    value.backward()
    assert value.item() == pytest.approx(float(losses[f"{case}.loss"]), rel=2e-7)
    if case != "kdx":
        expected = losses[f"{case}.grad.scores_s"]
        assert np.abs(s.grad.numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    else:
        zs, zt = s.detach() / tau, t / tau
        exact = torch.sigmoid(zs) - torch.sigmoid(zt)  # d KL / d z_s, per entry
        expected = (exact * mask) / mask.sum() * tau  # the mean over labelled entries, × τ² / τ
        assert torch.allclose(s.grad, expected, rtol=1e-9, atol=1e-15)
    assert "too many indices" in str(losses["kd_hard.error"])  # theirs crashes in hard mode; ours is tested apart


# ----------------------------------------------------------------------------- students


STUDENT_CASES = {  # golden file → (student, options, classes): their MTAT Mobile FCN and OpenMIC CP-ResNet
    "mobile_fcn": ("mobile_fcn", {"n_mels": 96}, 50),
    "cp_resnet": ("cp_resnet", {"rho": 7, "base_channels": 64}, 20),  # 64 channels keep the file small
}


@pytest.mark.parametrize("case", list(STUDENT_CASES))
def test_the_students_compute_what_theirs_compute_with_their_weights(case):
    """Their weights (seeded init, then perturbed so no block is zero), renamed by the student's authors_keys
    with every key and shape checked, give their logits and stage features (their README: about 1e-5 relative
    in float32; measured 3e-7)."""
    from eastmir.registry import STUDENTS

    golden = np.load(GOLDEN / f"{case}.npz")
    name, options, classes = STUDENT_CASES[case]
    student = STUDENTS.build(name, num_classes=classes, **options).eval()
    state = {
        k.removeprefix("state."): torch.from_numpy(np.asarray(golden[k])) for k in golden if k.startswith("state.")
    }
    student.load_state_dict(student.authors_state_dict(state, f"{case}.npz"), strict=True)
    with torch.no_grad():
        out = student(torch.from_numpy(golden["input"]))
    for ours, key in ((out.logits, "out.scores"), *((s, f"out.output_{i + 1}") for i, s in enumerate(out.stages))):
        expected = golden[key]
        assert ours.shape == expected.shape, key
        assert np.abs(ours.numpy() - expected).max() <= 1e-5 * np.abs(expected).max(), key
    assert student.backbone_parameters() == int(golden["n_params_backbone"])


def test_cp_resnet_at_full_width_has_their_parameter_count():
    from eastmir.registry import STUDENTS

    golden = np.load(GOLDEN / "cp_resnet.npz")
    student = STUDENTS.build("cp_resnet", num_classes=20, rho=7, base_channels=128)
    assert student.backbone_parameters() == int(golden["fullsize_n_params_backbone"]) == 5_524_352
    assert sum(p.numel() for p in student.parameters()) == int(golden["fullsize_n_params"])


def test_a_wrong_key_or_shape_is_named():
    from eastmir.registry import STUDENTS

    golden = np.load(GOLDEN / "mobile_fcn.npz")
    student = STUDENTS.build("mobile_fcn", num_classes=50, n_mels=96)
    state = {
        k.removeprefix("state."): torch.from_numpy(np.asarray(golden[k])) for k in golden if k.startswith("state.")
    }
    with pytest.raises(ValueError, match=r"x.ckpt: layer9.conv.weight \(as blocks.8.0.weight\) is not a parameter"):
        student.authors_state_dict({**state, "layer9.conv.weight": torch.zeros(1)}, "x.ckpt")
    with pytest.raises(
        ValueError, match=r"x.ckpt: dense.weight has shape \(20, 256\), MobileFCN's head.weight \(50, 256\)"
    ):
        student.authors_state_dict({**state, "dense.weight": torch.zeros(20, 256)}, "x.ckpt")
    del state["dense.bias"]
    with pytest.raises(ValueError, match=r"x.ckpt: no value for head.bias"):
        student.authors_state_dict(state, "x.ckpt")


# ----------------------------------------------------------------------------- metrics


def test_the_metrics_equal_theirs_where_every_class_is_defined():
    """Their MultiLabelBinaryEval (torchmetrics 1.9.0) on 18 classes with positives and negatives: mAP, ROC AUC
    and macro F1 (threshold 0.4, strictly above: 71 probabilities are exactly float32 0.4 and count as
    negative; eastmir counted them positive before this test, comparing in float64)."""
    from eastmir.metrics import masked_metrics

    golden = np.load(GOLDEN / "metrics.npz")
    probs, target, mask = (torch.from_numpy(golden[k]) for k in ("probs", "target", "mask"))
    clean = torch.from_numpy(golden["tm_new.clean18.classes"].astype(np.int64))
    ours = masked_metrics(probs[:, clean], target[:, clean], mask[:, clean])
    assert ours["mAP"] == pytest.approx(float(golden["tm_new.clean18.mAP"]), abs=1e-6)
    assert ours["roc_auc"] == pytest.approx(float(golden["tm_new.clean18.auc_roc"]), abs=1e-6)
    assert ours["f1"] == pytest.approx(float(golden["tm_new.clean18.macro_f1"]), abs=1e-6)


def test_classes_without_a_positive_or_a_negative_are_left_out_not_counted_as_zero():
    """With class 3 (no labelled positive) and class 7 (no labelled negative), theirs counts AP −0 and AUC 0
    into the means and its macro F1 is NaN; eastmir leaves undefined classes out (docs/method.md): its mAP is
    the mean of their other 19 per-class APs, its AUC of their other 18, and its F1 is a number."""
    from eastmir.metrics import masked_metrics

    golden = np.load(GOLDEN / "metrics.npz")
    probs, target, mask = (torch.from_numpy(golden[k]) for k in ("probs", "target", "mask"))
    ours = masked_metrics(probs, target, mask)
    ap, auc = golden["tm_new.all20.per_class.ap"], golden["tm_new.all20.per_class.auc_roc"]
    assert ours["mAP"] == pytest.approx(float(np.delete(ap, 3).mean()), abs=1e-6)
    assert ours["roc_auc"] == pytest.approx(float(np.delete(auc, [3, 7]).mean()), abs=1e-6)
    assert np.isnan(float(golden["tm_new.all20.macro_f1"])) and np.isfinite(ours["f1"])
    # class 7: their positive F1, and the negative F1 guarded (no labelled negative: 0 if any positive was
    # predicted negative, 1 if none was, where theirs divides 0 by 0)
    labelled = golden["mask"][:, 7]
    missed = bool((golden["probs"][labelled, 7] <= np.float32(0.4)).any())
    class7 = (float(golden["tm_new.all20.per_class.binary_f1"][7]) + (0.0 if missed else 1.0)) / 2
    others = np.delete(golden["tm_new.all20.per_class.macro_f1"], 7)
    assert ours["f1"] == pytest.approx((others.sum() + class7) / 20, abs=1e-6)


def test_teacher_lr_uses_their_plateau(tmp_path):
    """TeacherLR: SGD 0.1, plateau factor 0.1 and patience 1, early stop after 3 (the authors' code)."""
    from eastmir.config import load_config

    for name in ("openmic/teacher_lr-passt", "magnatagatune/teacher_lr-panns", "synth/teacher_lr"):
        config = load_config(name, workdir=tmp_path)
        assert (config.scheduler.factor, config.scheduler.patience, config.trainer.early_stop_patience) == (0.1, 1, 3)


def test_mobile_fcn_drops_out_after_each_stage_in_training_as_theirs():
    """Their one Dropout(0.5) runs three times in training: on each stage's block output after the stage is
    taken (stages 2 and 3 see dropped-out inputs). Counted with a hook: three calls per forward; the first
    stage is unaffected by it, the later ones are; ``dropout_at: head`` keeps eastmir's earlier single one."""
    from eastmir.registry import STUDENTS

    x = torch.randn(2, 96, 200)
    for dropout_at, calls in (("stages", 3), ("head", 1)):
        torch.manual_seed(0)
        student = STUDENTS.build("mobile_fcn", num_classes=5, dropout_at=dropout_at).train()
        seen = []
        student.dropout.register_forward_hook(lambda *_, seen=seen: seen.append(1))
        torch.manual_seed(1)
        first = student(x)
        torch.manual_seed(2)
        second = student(x)
        assert len(seen) == 2 * calls
        assert torch.allclose(first.stages[0], second.stages[0])  # taken before any dropout
        assert torch.equal(first.stages[2], second.stages[2]) == (dropout_at == "head")
        student.eval()
        assert torch.equal(student(x).logits, student(x).logits)  # no dropout in evaluation


# ----------------------------------------------------------------------------- time alignment


@pytest.mark.parametrize(
    ("case", "teacher", "factors"),
    [("openmic_vggish", "B.teacher_vggish", (1, 6)), ("openmic_pann", "B.teacher_pann", (1, 60))],
)
def test_alignment_by_their_repeat_factors_gives_their_losses(case, teacher, factors, losses):
    """CP-ResNet's 62 frames (10 s) against 10 VGGish frames repeated 6 times, or one PANN vector 60 times (their
    configs' factors), both cropped to the first 60: their distance correlation and cosine-distance difference."""
    from eastmir.losses.alignment import align_by_factors

    student, target = losses["B.student"], losses[teacher]
    n = student.shape[0]
    for kind, loss, scale in (("dc", DistanceCorrelationLoss(), 1.0), ("cos", CosineDistanceDifference(), (n - 1) / n)):
        aligned = lambda s, t, loss=loss: loss(*align_by_factors(s, t, factors))  # noqa: E731
        value, gradient = _value_and_gradient(aligned, student, target)
        expected = losses[f"B_{kind}_{case}.grad.output_3"]
        assert value * scale == pytest.approx(float(losses[f"B_{kind}_{case}.loss"]), rel=1e-6)
        assert np.abs(gradient * scale - expected).max() <= 1e-6 * np.abs(expected).max()


@pytest.mark.parametrize(
    ("recipe", "period", "factors"),
    [
        ("openmic/east_final-vggish", 0.96, (1, 6)),  # CP-ResNet stages of 0.16 s; their configs: teacher × 6
        ("openmic/east_final-passt", 0.96, (1, 6)),
        ("openmic/east_final-panns", None, (1, 60)),  # one vector per 10 s clip: their configs' × 60 (runs.yaml)
        ("magnatagatune/east_final-vggish", 0.96, (2, 1)),  # Mobile FCN's last stage, 1.92 s: student × 2
        ("magnatagatune/east_final-panns", None, (1, 15)),  # 29.1 s / 1.92 s
    ],
)
def test_the_frame_periods_give_their_configs_repeat_factors(recipe, period, factors, tmp_path):
    """``distillation.feature.align: periods`` (the default) derives the factors the authors wrote into their
    configs from each side's frame period (golden README, 'Time-alignment repeat factors')."""
    from eastmir.config import load_config
    from eastmir.training.system import EastSystem

    config = load_config(recipe, workdir=tmp_path)
    classes = 20 if recipe.startswith("openmic") else 50
    system = EastSystem(
        config, classes, embedding_dim=128, clip_seconds=config.data.clip_seconds, embedding_period=period
    )
    assert system.distiller.align_factors == {system.distiller.stages[-1]: factors}
    assert (
        EastSystem(
            config.changed({"distillation": {"feature": {"align": "ceil"}}}), classes, 128
        ).distiller.align_factors
        == {}
    )


@pytest.mark.parametrize(("kind", "loss"), [("dc", DistanceCorrelationLoss()), ("cos", CosineDistanceDifference())])
def test_every_stage_with_its_repeat_factor_gives_their_east_all_loss(kind, loss, losses, tmp_path):
    """Their EAsT_All shape on MagnaTagATune with VGGish (the ``D`` cases): stages of 30, 15 and 15 frames
    against 30 teacher frames, the first as it is and the other two repeated × 2 (their config's factors, which
    our system derives from the frame periods), weights 1 each normalised to 1/3; ours for the cosine-distance
    difference is theirs · N / (N − 1), as for one stage."""
    from eastmir.config import load_config
    from eastmir.losses.alignment import align_by_factors
    from eastmir.training.system import EastSystem

    config = load_config("magnatagatune/east_all-vggish", workdir=tmp_path)
    factors = EastSystem(
        config, 50, embedding_dim=128, clip_seconds=29.1, embedding_period=0.96
    ).distiller.align_factors
    assert factors == {0: (1, 1), 1: (2, 1), 2: (2, 1)}
    teacher = torch.tensor(losses["D.teacher"])
    stages = [torch.tensor(losses[f"D.output_{k}"], requires_grad=True) for k in (1, 2, 3)]
    value = sum(loss(*align_by_factors(x, teacher, factors[i])) for i, x in enumerate(stages)) / 3
    value.backward()
    n = teacher.shape[0]
    scale = 1.0 if kind == "dc" else (n - 1) / n
    case = f"D_{kind}_all_magna_vggish"
    assert value.item() * scale == pytest.approx(float(losses[f"{case}.loss"]), rel=1e-6)
    for k, x in enumerate(stages, 1):
        expected = losses[f"{case}.grad.output_{k}"]
        assert np.abs(x.grad.numpy() * scale - expected).max() <= 1e-6 * np.abs(expected).max(), k


@pytest.mark.parametrize(
    ("case", "recipe", "features", "teacher", "factors"),
    [
        ("C_openmic_vggish", "openmic/east_kd-vggish", "B.student", "B.teacher_vggish", (1, 6)),
        ("C_magna_vggish", "magnatagatune/east_kd-vggish", "A.student", "A.teacher", (2, 1)),
    ],
)
def test_east_kd_combines_as_theirs(case, recipe, features, teacher, factors, losses, tmp_path):
    """Their ``CombineDistRegLoss``: (1 − 0.3) · distance correlation (their configs' factors) + 0.3 · KD (τ 2):
    the recipes' EAsT_KD configs carry these weights, and ours on the same arrays gives their value, its parts
    and both gradients."""
    from eastmir.config import load_config
    from eastmir.losses.alignment import align_by_factors

    config = load_config(recipe, workdir=tmp_path)
    feature_weight, kd = config.feature.weight, config.kd
    assert (feature_weight, kd.weight, kd.temperature) == (0.7, float(losses[f"{case}.kd_weight"]), 2.0)
    x = torch.tensor(losses[features], requires_grad=True)
    s = torch.tensor(losses["kd.scores_s"], requires_grad=True)
    t, mask = torch.tensor(losses["kd.scores_t"]), torch.tensor(losses["kd.mask"])
    dc = DistanceCorrelationLoss()(*align_by_factors(x, torch.tensor(losses[teacher]), factors))
    distilled = knowledge_distillation(s, t, mask, temperature=kd.temperature)
    value = feature_weight * dc + kd.weight * distilled
    value.backward()
    assert dc.item() == pytest.approx(float(losses[f"{case}.feature_part"]), rel=1e-6)
    assert distilled.item() == pytest.approx(float(losses[f"{case}.kd_part"]), rel=1e-7)
    assert value.item() == pytest.approx(float(losses[f"{case}.loss"]), rel=1e-6)
    for grad, key in ((x.grad, "output_3"), (s.grad, "scores_s")):
        expected = losses[f"{case}.grad.{key}"]
        assert np.abs(grad.numpy() - expected).max() <= 1e-5 * np.abs(expected).max(), key


# ----------------------------------------------------------------------------- one validation step


def test_one_validation_step_of_east_kd(tmp_path):
    """Their LightningModule on the MTAT EAsT_KD VGGish config (λ 0.6; distance correlation on the last stage,
    student × 2; KD τ 2, weight 0.3), the golden Mobile FCN weights and a seeded TeacherLR head, one validation
    batch. eastmir's system from the same config (alignment by frame periods, the total monitored) gives their
    teacher scores and their L_pred (0.70625), and monitors (1 − λ)·L_pred + λ·L_reg as theirs does.

    Their stored L_reg (0.14960) is not what their own loss classes give on the arrays stored beside it: the
    distance correlation of their `student.output_3` (× 2) with the batch's VGGish frames is 0.135494 and KD of
    their student and teacher scores 0.030582, and 0.7 · 0.135494 + 0.3 · 0.030582 = 0.104021, the combination
    their `C_*` loss cases confirm. eastmir gives 0.104021; the difference is left open (reported)."""
    from eastmir.config import load_config
    from eastmir.training.checkpoints import TeacherHead
    from eastmir.training.system import EastSystem

    golden, weights = np.load(GOLDEN / "system_step.npz"), np.load(GOLDEN / "mobile_fcn.npz")
    config = load_config("magnatagatune/east_kd-vggish", workdir=tmp_path)
    assert config.lam == float(golden["reg_loss_weight"]) == 0.6 and config.trainer.validation_loss == "total"
    system = EastSystem(config, 50, embedding_dim=128, clip_seconds=29.1, embedding_period=0.96)
    state = {k.removeprefix("state."): torch.from_numpy(np.asarray(v)) for k, v in weights.items() if "state." in k}
    system.student.load_state_dict(system.student.authors_state_dict(state, "mobile_fcn.npz"))
    head = {"weight": golden["teacher.proj.weight"], "bias": golden["teacher.proj.bias"]}
    state = {k: torch.from_numpy(v) for k, v in head.items()}
    system.set_teacher_head(TeacherHead(Path("the authors' TeacherLR head"), state, []))
    system.eval()
    batch = {
        "logmel": torch.from_numpy(golden["batch.x"]),
        "embedding": torch.from_numpy(golden["batch.vggish"]),
        "targets": torch.from_numpy(golden["batch.y"]),
        "mask": torch.from_numpy(golden["batch.y_mask"]),
    }
    with torch.no_grad():
        terms = system.losses(batch)
        system.validation_step(batch, 0)
        teacher = system.distiller.teacher_head(batch["embedding"]).logits
    assert np.allclose(teacher.numpy(), golden["teacher.scores"], rtol=1e-5, atol=1e-5)
    assert terms["pred"].item() == pytest.approx(float(golden["loss.pred"]), rel=1e-5)
    assert terms["reg"].item() == pytest.approx(0.7 * 0.135494 + 0.3 * 0.030582, rel=1e-5)
    assert float(golden["loss.total"]) == pytest.approx(
        0.4 * float(golden["loss.pred"]) + 0.6 * float(golden["loss.reg"])
    )
    assert system.val_loss.compute().item() == pytest.approx(0.4 * terms["pred"].item() + 0.6 * terms["reg"].item())


# ---------------------------------------------------------------- augmentation (their featurizer and mixup)


def test_mixup_folds_the_weights_as_theirs():
    """λ ~ Beta(α, α), then max(λ, 1 − λ): every clip stays the larger part of its mix."""
    from eastmir.training.augment import mixup

    eye = torch.eye(64)
    batch = {"logmel": eye.clone(), "targets": eye.clone(), "mask": torch.ones(64, 64, dtype=torch.bool)}
    torch.manual_seed(0)
    folded = mixup(batch, alpha=0.3, fold=True)["logmel"].diagonal()
    torch.manual_seed(0)
    plain = mixup(batch, alpha=0.3)["logmel"].diagonal()
    assert bool((folded >= 0.5).all()) and bool((plain < 0.5).any())


def test_their_band_edge_jitter_moves_fmin_up_and_fmax_down_by_whole_hertz():
    """Their featurizer: fmin + U{0..19} Hz, fmax − U{0..1999} Hz (np.random.randint), per clip."""
    from eastmir.training.augment import jittered_ranges

    g = torch.Generator().manual_seed(0)
    ranges = list(zip(*(t.tolist() for t in jittered_ranges(500, 0.0, 16000.0, 20.0, 2000.0, 16000.0, g, inward=True))))
    lows, highs = zip(*ranges)
    assert set(lows) <= {float(i) for i in range(20)} and len(set(lows)) > 15
    assert all(14001.0 <= h <= 16000.0 and h == int(h) for h in highs)


def test_the_authors_augmentation_masks_at_log_zero_before_mixing(tmp_path):
    """OpenMIC recipe (augment.style: authors): SpecAugment cells at log 0 before the normalisation, i.e.
    3.7 / 3.1 ≈ 1.194 after it, applied per clip before mixup; eastmir's style masks at 0 after mixing."""
    from eastmir.config import load_config
    from eastmir.training.system import EastSystem

    config = load_config("openmic/baseline", workdir=tmp_path)
    assert config.augment.style == "authors" and config.augment.spec_augment.freq == 48
    system = EastSystem(config, 20)
    assert system.mask_fill == pytest.approx(3.7 / 3.1)
    batch = {"logmel": torch.randn(4, 128, 1000), "targets": torch.zeros(4, 20), "mask": torch.ones(4, 20) > 0}
    masked = system._spec_augment(batch)["logmel"]
    changed = masked != batch["logmel"]
    assert changed.any() and torch.allclose(masked[changed], torch.tensor(3.7 / 3.1))
    eastmir = EastSystem(config.changed({"augment": {"style": "eastmir"}}), 20)
    assert eastmir.mask_fill == 0.0


def test_which_dropout_each_recipe_uses_is_written_in_its_config(tmp_path):
    """MagnaTagATune: the authors' three dropouts; synth and folder: one before the head (their trainings are
    minutes long: the clean-clone demo's Baseline fell from 0.48 to 0.237 test mAP with three). Written out, so
    a run started with the other resumes only after naming it (component options join the fingerprint when set)."""
    from eastmir.config import load_config

    assert load_config("magnatagatune/baseline", workdir=tmp_path).student.options["dropout_at"] == "stages"
    for name in ("synth/baseline", "folder/baseline"):
        assert load_config(name, workdir=tmp_path).student.options["dropout_at"] == "head"
