import json

import pytest
import torch

from eastmir.audio import FrontendConfig
from eastmir.config import ConfigError, load_config, shipped_config_dir
from eastmir.registry import STUDENTS
from eastmir.training.fit import validate
from eastmir.training.system import EastSystem

SHIPPED = sorted(
    p
    for p in shipped_config_dir().rglob("*.yaml")
    if p.stem != "base" and not any(part.startswith("_") for part in p.relative_to(shipped_config_dir()).parts)
)
N_CLASSES = {"synth": 17, "openmic": 20, "magnatagatune": 50}


def fake_teacher_run(run_dir, num_classes, dim):
    """A finished TeacherLR run as fit writes it: metrics.json + best checkpoint."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    state = {"student.head.weight": torch.randn(num_classes, dim) * 0.1, "student.head.bias": torch.zeros(num_classes)}
    torch.save({"state_dict": state}, run_dir / "checkpoints" / "best.ckpt")
    (run_dir / "metrics.json").write_text(
        json.dumps({"student": "linear_probe", "best_checkpoint": "checkpoints/best.ckpt"})
    )


def generated_batch(config, num_classes, dim, n=3, max_seconds=2.0):
    seconds = min(config["data"].get("clip_seconds") or 3.0, max_seconds)
    front = FrontendConfig(**config.get("frontend", {}))
    samples = int(seconds * front.sample_rate)
    key = STUDENTS.get(config["student"]["name"]).input_key
    teacher = config.get("teacher") or {}
    frame = teacher.get("frame_seconds", 1.16)
    frames = max(1, int(seconds / frame)) if frame else 1
    batch = {
        "targets": (torch.rand(n, num_classes) < 0.3).float(),
        "mask": torch.rand(n, num_classes) < 0.7,
        "embedding": torch.randn(n, frames, dim),
    }
    if key == "logmel":
        batch["logmel"] = torch.randn(n, front.n_mels, front.n_frames(samples))
    elif key == "waveform":
        batch["waveform"] = torch.randn(n, max(samples, 288 * 256))
    return batch


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_trains_one_step(path, tmp_path):
    config = load_config(path, workdir=tmp_path)
    validate(config)
    dataset = config["data"]["dataset"]
    num_classes = N_CLASSES[dataset]
    dim = (config.get("teacher") or {}).get("dim", 512)
    kd = (config.get("distillation") or {}).get("kd")
    if kd:
        fake_teacher_run(tmp_path / "runs" / kd["teacher_run"].rsplit("/", 1)[-1], num_classes, dim)
    system = EastSystem(config, num_classes=num_classes, embedding_dim=dim if config.get("teacher") else None)
    optimizer = system.configure_optimizers()["optimizer"]
    batch = generated_batch(config, num_classes, dim)
    before = [p.detach().clone() for p in system.student.parameters()]
    loss = system.training_step(batch, 0)  # mixup / SpecAugment as configured
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, system.student.parameters()))
    assert str(tmp_path) in config["data"]["root"]


def test_overrides_and_workdir(tmp_path):
    cfg = load_config("synth/east_final", ["distillation.lambda=0.3", "trainer.max_epochs=2"], workdir=tmp_path)
    assert cfg["distillation"]["lambda"] == 0.3 and cfg["trainer"]["max_epochs"] == 2
    assert cfg["student"]["name"] == "mobile_fcn" and cfg["data"]["root"] == f"{tmp_path}/data/synth"


def test_student_of_another_name_replaces_rather_than_merges(tmp_path):
    cfg = load_config("magnatagatune_harmonic_cnn/baseline", workdir=tmp_path)
    assert cfg["student"] == {"name": "harmonic_cnn"}  # no n_mels leaked from Mobile FCN's base


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["distillation.feature.stages=[5]"], "has 3 stages"),
        (["distillation.lambda=1.5"], r"must lie in \[0, 1\]"),
        (
            ["distillation.feature.name=distance_corr"],
            "valid regularisers: cosine_distance_difference, distance_correlation, fitnet",
        ),
        (["student.name=resnet9000"], "valid students"),
        (["distillation.kd={weight: 0.3}"], "teacher_run"),
        (["distillation.compresion={name: linear}"], "unknown keys"),
        (["task=regression"], "task must be one of"),
        (["frontend.n_mels=128"], "student.n_mels is 96 but the front end makes 128"),
    ],
)
def test_impossible_configs_fail_clearly(tmp_path, overrides, message):
    cfg = load_config("synth/east_final", overrides, workdir=tmp_path)
    with pytest.raises((ConfigError, KeyError), match=message):
        validate(cfg)
        EastSystem(cfg, num_classes=17, embedding_dim=512)


def test_kd_without_a_teacher_lr_run_fails_clearly(tmp_path):
    cfg = load_config("synth/kd", workdir=tmp_path)
    with pytest.raises(ConfigError, match="finished TeacherLR run"):
        EastSystem(cfg, num_classes=17, embedding_dim=512)


def test_distillation_without_teacher_fails(tmp_path):
    cfg = load_config("synth/east_final", workdir=tmp_path)
    cfg["teacher"] = None
    with pytest.raises(ConfigError, match="teacher"):
        validate(cfg)


def test_bad_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad, workdir=tmp_path)
