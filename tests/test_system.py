"""The Lightning system's loss composition, gradient routing and augmentation."""

import json

import pytest
import torch

from eastmir.config import load_config
from eastmir.config.schema import TrainerSection
from eastmir.errors import ConfigError
from eastmir.losses.alignment import align_by_factors
from eastmir.losses.distance_correlation import DistanceCorrelationLoss
from eastmir.training.augment import mixup, spec_augment
from eastmir.training.system import EastSystem


def batch(n=6, classes=17, frames=200, dim=512, t=2):
    return {
        "logmel": torch.randn(n, 96, frames),
        "embedding": torch.randn(n, t, dim),
        "targets": (torch.rand(n, classes) < 0.3).float(),
        "mask": torch.rand(n, classes) < 0.7,
    }


def system_for(name, tmp_path, *overrides):
    torch.manual_seed(0)
    return EastSystem(
        load_config(f"synth/{name}", list(overrides), workdir=tmp_path), num_classes=17, embedding_dim=512
    )


def test_all_stage_weights_are_normalised(tmp_path):
    system = system_for("east_all", tmp_path).eval()  # no dropout: the two forward passes below agree
    assert system.distiller.stages == [0, 1, 2]
    b = batch()
    terms = system.losses(b)
    out = system.student(b["logmel"])
    factors = system.distiller.align_factors  # each stage against the embedding, aligned by the frame periods
    per_stage = [
        DistanceCorrelationLoss()(*align_by_factors(s, b["embedding"], factors[i])) for i, s in enumerate(out.stages)
    ]
    assert terms["feature"].item() == pytest.approx((sum(per_stage) / 3).item(), abs=1e-5)
    lam = system.distiller.lam
    assert terms["loss"].item() == pytest.approx(((1 - lam) * terms["pred"] + lam * terms["feature"]).item(), abs=1e-5)


def test_final_stage_only(tmp_path):
    system = system_for("east_final", tmp_path)
    assert system.distiller.stages == [2]


def test_compression_gradients_reach_only_their_parts(tmp_path):
    system = system_for("east_dc_linear", tmp_path)
    b = batch()
    b["embedding"].requires_grad_(True)
    terms = system.losses(b)
    terms["teacher"].backward(retain_graph=True)
    transform = system.distiller.transforms[0]
    assert transform.transform.weight.grad is not None and transform.head.weight.grad is not None
    assert all(p.grad is None for p in system.student.parameters())  # L_teacher never reaches the student
    assert b["embedding"].grad is None  # ... nor the teacher
    system.zero_grad()
    for p in transform.parameters():
        p.grad = None
    terms["feature"].backward()
    assert all(p.grad is None for p in transform.parameters())  # the distance loss never reaches the transformation
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in system.student.parameters())
    assert b["embedding"].grad is None


def test_fitnet_linear_has_no_student_projection(tmp_path):
    system = system_for("east_fitnet_linear", tmp_path)
    assert isinstance(system.distiller.regularisers[0].projection, torch.nn.Identity)
    plain = system_for("east_fitnet", tmp_path)
    assert plain.distiller.regularisers[0].projection.weight.shape == (512, 256)
    assert any(
        p is plain.distiller.regularisers[0].projection.weight
        for g in plain.configure_optimizers()["optimizer"].param_groups
        for p in g["params"]
    )


def test_east_kd_combines_weighted_kd_and_dc(tmp_path, fake_teacher_run):
    from eastmir.training.checkpoints import read_teacher_head

    system = system_for("east_kd", tmp_path)
    head = read_teacher_head(fake_teacher_run(tmp_path / "runs" / "teacher_lr", 17, 512))
    system.set_teacher_head(head)
    assert torch.equal(system.distiller.teacher_head.head.weight, head.state["weight"])
    terms = system.losses(batch())
    assert terms["reg"].item() == pytest.approx((0.7 * terms["feature"] + 0.3 * terms["kd"]).item(), abs=1e-6)
    assert not any(p.requires_grad for p in system.distiller.teacher_head.parameters())


def test_mixup_mixes_labels_and_takes_union_of_masks():
    torch.manual_seed(1)
    b = batch(n=8)
    mixed = mixup(b, alpha=0.3)
    assert mixed["logmel"].shape == b["logmel"].shape
    assert (mixed["mask"] >= b["mask"]).all()  # known when either source is
    assert ((mixed["targets"] >= 0) & (mixed["targets"] <= 1)).all()
    assert not torch.equal(mixed["logmel"], b["logmel"])


def test_mixup_with_partners_mixes_each_clip_with_its_own_partner():
    torch.manual_seed(1)
    b, p = batch(n=8), batch(n=8)
    b["logmel"], p["logmel"] = torch.zeros_like(b["logmel"]), torch.ones_like(p["logmel"])
    b["mask"], p["mask"] = torch.ones_like(b["mask"]), torch.zeros_like(p["mask"])
    b["mask"][:, :3], p["mask"][:, :3] = False, True
    mixed = mixup(b, alpha=0.3, fold=True, partner=p)
    share = mixed["logmel"].flatten(1)  # (1 − λ) per clip: the partner's share, ≤ 0.5 folded
    assert torch.allclose(share, share[:, :1]) and (share <= 0.5).all() and (share > 0).any()
    assert mixed["mask"].all()  # union of the two masks
    lam = 1 - share[:, 0]
    expected = lam[:, None] * b["targets"] + (1 - lam[:, None]) * p["targets"]
    assert torch.allclose(mixed["targets"], expected, atol=1e-6)


def test_a_training_step_mixes_with_the_partner_the_data_module_serves(tmp_path):
    system = system_for("baseline", tmp_path, "augment={mixup_alpha: 0.3}")
    b, p = batch(n=4), batch(n=4)
    seen = {}

    def losses(mixed):
        seen["batch"] = mixed
        return {"loss": torch.tensor(0.0)}

    system.losses, system.log = losses, lambda *a, **k: None
    system.training_step(dict(b, partner=p), 0)
    mixed = seen["batch"]
    assert "partner" not in mixed
    lam = ((mixed["logmel"] - p["logmel"]) / (b["logmel"] - p["logmel"])).flatten(1).median(dim=1).values
    assert (lam >= 0.5 - 1e-4).all() and (lam <= 1 + 1e-4).all()  # the partner's values, folded weights


def test_partners_from_the_training_set_cannot_stream(tmp_path):
    with pytest.raises(ConfigError, match=r"augment.mixup_partner: training_set .*data.stream"):
        load_config("synth/baseline", ["augment={mixup_alpha: 0.3}", "data.stream=/tmp/shards"], workdir=tmp_path)
    config = load_config("synth/baseline", ["augment={mixup_alpha: 0.3, mixup_partner: batch}"], workdir=tmp_path)
    assert config.augmentation.mixup_partner == "batch"


def test_spec_augment_masks_bands_within_limits():
    torch.manual_seed(2)
    x = torch.ones(16, 96, 300)
    y = spec_augment(x, freq=48, time=100)
    for sample in y:
        zero_rows = (sample == 0).all(dim=1).sum()
        zero_cols = (sample == 0).all(dim=0).sum()
        assert zero_rows <= 48 and zero_cols <= 100
    assert (y == 0).any()


def test_single_label_task_trains_and_reports_accuracy(tmp_path):
    """Single-label: one instrument per clip, fully labelled → softmax CE and accuracy."""
    from eastmir import pipeline

    options = {
        "n_clips": 48,
        "clip_seconds": 2.0,
        "min_instruments": 1,
        "max_instruments": 1,
        "label_rate": 1.0,
        "classes": ["piano", "drums", "flute", "violin"],
    }
    pipeline.prepare("synth", tmp_path / "data" / "synth", options, progress=False)
    cfg = load_config("synth/baseline", ["task=single_label", "trainer.max_epochs=1", "name=single"], workdir=tmp_path)
    metrics = json.loads((pipeline.fit(cfg, progress=False) / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy"} and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert any(
        p.name.startswith("best-") and "accuracy" in p.name
        for p in (tmp_path / "runs" / "single" / "checkpoints").iterdir()
    )


def test_frequency_jitter_uses_each_ends_own_range():
    from eastmir.training.augment import jittered_ranges

    g = torch.Generator().manual_seed(0)
    only_fmax = list(zip(*(t.tolist() for t in jittered_ranges(200, 0.0, 14000.0, 0.0, 2000.0, 16000.0, g))))
    assert all(lo == 0.0 for lo, _ in only_fmax)
    highs = [hi for _, hi in only_fmax]
    assert 12000 <= min(highs) < 12500 and 15500 < max(highs) <= 16000  # ±2 kHz, not the fmin range
    only_fmin = list(zip(*(t.tolist() for t in jittered_ranges(200, 50.0, 14000.0, 20.0, 0.0, 16000.0, g))))
    assert all(hi == 14000.0 for _, hi in only_fmin)
    assert all(30.0 <= lo <= 70.0 for lo, _ in only_fmin)


def test_jitter_computes_logmel_per_batch_from_waveforms(tmp_path):
    system = system_for("baseline", tmp_path, "augment={fmin_jitter: 20, fmax_jitter: 2000}")
    assert system.input_key == "waveform"
    wave = {
        "waveform": torch.randn(4, 32000),
        "targets": torch.ones(4, 17),
        "mask": torch.ones(4, 17, dtype=torch.bool),
    }
    a = system.with_logmel(wave, train=True)["logmel"]
    b = system.with_logmel(wave, train=True)["logmel"]
    # 100 frames: the authors' pre-emphasis (synth's front end) is a valid convolution, one sample shorter
    assert a.shape == (4, 96, 100) and not torch.allclose(a, b)  # a new filterbank range each clip
    e1, e2 = system.with_logmel(wave, train=False)["logmel"], system.with_logmel(wave, train=False)["logmel"]
    assert torch.equal(e1, e2)  # evaluation uses the configured range


@pytest.mark.parametrize("monitored", ["prediction", "total"])
def test_the_monitored_validation_loss_is_the_one_asked_for(monitored, tmp_path):
    """``trainer.validation_loss``: ``total`` (the authors', set by the paper recipes) makes val_loss
    (1 − λ)·L_pred + λ·L_reg on the validation batches; ``prediction`` L_pred alone."""
    system = system_for("east_final", tmp_path, f"trainer.validation_loss={monitored}").eval()
    data = batch()
    with torch.no_grad():
        system.validation_step(data, 0)
        terms = system.losses(data)
    assert terms["reg"] > 0.01 and system.distiller.lam > 0
    expected = terms["loss"] if monitored == "total" else terms["pred"]
    assert system.val_loss.compute() == pytest.approx(float(expected), rel=1e-6)


def test_the_paper_recipes_monitor_the_total_loss(tmp_path):
    recipes = ("openmic/east_final-passt", "magnatagatune/east_final-passt", "openmic/baseline", "synth/east_kd")
    for name in (*recipes, "folder/east_final-musicnn"):
        assert load_config(name, workdir=tmp_path).trainer.validation_loss == "total"
    assert TrainerSection().validation_loss == "prediction"  # a config that does not say


def test_under_bf16_autocast_the_losses_are_computed_in_float32(tmp_path):
    """trainer.precision: bf16-mixed runs the student in bfloat16; distance correlation, KD and the prediction
    loss take its outputs in float32, outside autocast (their sums and double centring need the digits)."""
    system = system_for("east_final", tmp_path).eval()  # no dropout: both passes see the same network
    b = batch(n=8)
    exact = system.losses(b)
    with torch.autocast("cpu", torch.bfloat16):
        out = system.student(b["logmel"])
        assert out.logits.dtype == torch.bfloat16  # the student does run in bf16
        terms = system.loss_terms(out, b)
    assert all(t.dtype == torch.float32 for t in terms.values())
    s = system.distiller.stages[-1]
    stage, target = out.stages[s].float(), b["embedding"]
    if s in system.distiller.align_factors:
        stage, target = align_by_factors(stage, target, system.distiller.align_factors[s])
    expected = DistanceCorrelationLoss()(stage, target)
    assert terms["feature"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(exact["loss"].item(), rel=5e-2)  # bf16's rounding, not more


def test_a_checkpoint_from_before_the_distiller_loads_its_regularisers_compressions_and_kd_head(
    tmp_path, fake_teacher_run
):
    """The distiller's modules lived at the system's top level (``regularisers.*``, ``transforms.*``,
    ``teacher_head.*``): such a state dict loads strictly, every tensor where it was, and the parameters keep
    their order (an optimiser's state, kept by index, still matches them)."""
    from eastmir.training.checkpoints import read_teacher_head

    saved = system_for("east_fitnet", tmp_path)
    old = {}
    for key, value in saved.state_dict().items():
        old[key.removeprefix("distiller.")] = value.clone() + 0.5 if value.is_floating_point() else value
    assert any(k.startswith("regularisers.") for k in old) and not any(k.startswith("distiller.") for k in old)
    fresh = system_for("east_fitnet", tmp_path)
    fresh.load_state_dict(old, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, old[key.removeprefix("distiller.")]), key

    kd = system_for("east_kd", tmp_path)
    kd.set_teacher_head(read_teacher_head(fake_teacher_run(tmp_path / "runs" / "teacher_lr", 17, 512)))
    old = {k.removeprefix("distiller."): v for k, v in kd.state_dict().items()}
    assert "teacher_head.head.weight" in old
    again = system_for("east_kd", tmp_path)
    again.load_state_dict(old, strict=True)
    assert torch.equal(again.distiller.teacher_head.head.weight, kd.distiller.teacher_head.head.weight)

    compressed = system_for("east_dc_linear", tmp_path)
    names = [n for n, _ in compressed.named_parameters()]
    assert names.index("distiller.transforms.0.transform.weight") > max(
        i for i, n in enumerate(names) if n.startswith("student.")
    )  # the student first, then the distiller's, as before
