import pytest

from eastmir.config import ConfigError, load_config, shipped_config_dir
from eastmir.training.fit import validate
from eastmir.training.system import EastSystem

SHIPPED = sorted(p for p in shipped_config_dir().rglob("*.yaml") if p.stem != "base")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_builds_its_system(path, tmp_path):
    import torch

    config = load_config(path, workdir=tmp_path)
    validate(config)
    system = EastSystem(config, num_classes=17, embedding_dim=512 if config.get("teacher") else None)
    batch = {"targets": torch.ones(4, 17), "mask": torch.ones(4, 17, dtype=torch.bool),
             "logmel": torch.randn(4, 96, 200), "embedding": torch.randn(4, 2, 512)}
    losses = system.losses(batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert str(tmp_path) in config["data"]["root"]


def test_overrides_and_workdir(tmp_path):
    cfg = load_config("synth/east_final", ["regulariser.weight=0.3", "trainer.max_epochs=2"], workdir=tmp_path)
    assert cfg["regulariser"]["weight"] == 0.3 and cfg["trainer"]["max_epochs"] == 2
    assert cfg["student"]["name"] == "mobile_fcn" and cfg["data"]["root"] == f"{tmp_path}/data/synth"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["regulariser.stages=[5]"], "has 3 stages"),
        (["regulariser.weight=1.5"], r"must lie in \[0, 1\]"),
        (["regulariser.name=distance_corr"], "valid regularisers: distance_correlation"),
        (["student.name=resnet9000"], "valid students"),
    ],
)
def test_impossible_configs_fail_clearly(tmp_path, overrides, message):
    cfg = load_config("synth/east_final", overrides, workdir=tmp_path)
    with pytest.raises((ConfigError, KeyError), match=message):
        validate(cfg)
        EastSystem(cfg, num_classes=17, embedding_dim=512)


def test_regulariser_without_teacher_fails(tmp_path):
    cfg = load_config("synth/east_final", workdir=tmp_path)
    cfg["teacher"] = None
    with pytest.raises(ConfigError, match="teacher"):
        validate(cfg)


def test_bad_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad, workdir=tmp_path)
