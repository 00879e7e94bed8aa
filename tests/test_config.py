import pytest
import torch

from eastmir.config import load_config, shipped_names
from eastmir.errors import ConfigError
from eastmir.training.system import EastSystem

SHIPPED = shipped_names()
N_CLASSES = {"synth": 17, "openmic": 20, "magnatagatune": 50, "folder": 5}


def generated_batch(config, num_classes, dim, n=3, max_seconds=2.0):
    seconds = min(config.data.clip_seconds or 3.0, max_seconds)
    front = config.frontend
    samples = int(seconds * front.sample_rate)
    key = config.student.capabilities.input_key
    teacher = config.teacher.options if config.teacher else {}
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


def test_the_shipped_configs_are_all_there():
    # 12 synth systems + 2 × 25 Table-1 runs + 2 × 11 second-paper runs + folder: Baseline and 11 systems × 2 teachers
    assert len(SHIPPED) == 107
    assert "openmic/east_kd-passt" in SHIPPED and "magnatagatune_harmonic_cnn/east_dc_linear-mule" in SHIPPED
    assert "folder/east_final-musicnn" in SHIPPED and "folder/teacher_lr-musicnn" in SHIPPED  # both offline teachers
    assert "synth/east_final_unbiased" in SHIPPED and "folder/east_final_unbiased-aisfx" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_trains_one_step(name, tmp_path):
    config = load_config(name, workdir=tmp_path)
    dataset = config.data.dataset
    num_classes = N_CLASSES[dataset]
    dim = config.teacher.options.get("dim", 512) if config.teacher else 512
    kd = config.kd
    system = EastSystem(config, num_classes=num_classes, embedding_dim=dim if config.teacher else None)
    if kd:
        assert kd.teacher_run.startswith(str(tmp_path / "runs"))
        assert config.requires, "a KD run names the TeacherLR run it needs"
    optimizer = system.configure_optimizers()["optimizer"]
    batch = generated_batch(config, num_classes, dim)
    before = [p.detach().clone() for p in system.student.parameters()]
    loss = system.training_step(batch, 0)  # mixup / SpecAugment as configured
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, system.student.parameters()))
    assert str(tmp_path) in config.data.root


def test_overrides_and_workdir(tmp_path):
    cfg = load_config("synth/east_final", ["distillation.lambda=0.3", "trainer.max_epochs=2"], workdir=tmp_path)
    assert cfg.lam == 0.3 and cfg.trainer.max_epochs == 2
    assert cfg.student.name == "mobile_fcn" and cfg.data.root == f"{tmp_path}/data/synth"


def test_student_of_another_name_replaces_rather_than_merges(tmp_path):
    cfg = load_config("magnatagatune_harmonic_cnn/baseline", workdir=tmp_path)
    assert cfg.to_dict()["student"] == {"name": "harmonic_cnn"}  # no n_mels leaked from Mobile FCN's base


def test_table_runs_compose_published_settings(tmp_path):
    passt = load_config("openmic/east_final-passt", workdir=tmp_path)
    assert passt.name == "openmic-east_final-passt" and passt.system == "EAsT_Final"
    assert passt.lam == 0.9 and passt.to_dict()["teacher"] == {"name": "passt"}
    vggish = load_config("openmic/east_final-vggish", workdir=tmp_path).teacher  # the features OpenMIC ships
    assert vggish.name == "precomputed" and vggish.options["path"] == f"{tmp_path}/data/openmic/embeddings/vggish"
    assert load_config("openmic/east_kd-vggish", workdir=tmp_path).lam == 0.8
    kd = load_config("openmic/kd-panns", workdir=tmp_path)
    assert kd.kd.teacher_run == f"{tmp_path}/runs/openmic-teacher_lr-panns"
    assert kd.requires == ["openmic/teacher_lr-panns"]
    assert load_config("openmic/teacher_lr-vggish", workdir=tmp_path).optimizer.lr == 0.2
    assert load_config("openmic/teacher_lr-passt", workdir=tmp_path).optimizer.lr == 0.1
    assert load_config("magnatagatune/teacher_lr-passt", workdir=tmp_path).optimizer.lr == 0.2
    assert load_config("magnatagatune/east_all-panns", workdir=tmp_path).lam == 0.6
    teacher_lr = load_config("openmic/teacher_lr-openl3", workdir=tmp_path)
    assert teacher_lr.augment is None and teacher_lr.distillation is None


def test_parts_compose_on_the_command_line(tmp_path):
    cfg = load_config(
        ["openmic/base.yaml", "systems/east_all.yaml", "openmic/teachers/vggish.yaml"],
        ["name=mine", "distillation.lambda=0.7", "data.root=/data/openmic"],
        workdir=tmp_path,
    )
    assert cfg.system == "EAsT_All" and cfg.lam == 0.7
    assert cfg.teacher.options["path"] == "/data/openmic/embeddings/vggish"  # {data_root} follows data.root


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["distillation.feature.stages=[5]"], "has 3 stages"),
        (["distillation.lambda=1.5"], "distillation.lambda: must be at most 1.0, got 1.5"),
        (["distillation.feature.name=distance_corr"], "(did you mean distance_correlation?); valid regularisers: "),
        (["student.name=resnet9000"], "valid students"),
        (["distillation.kd={weight: 0.3}"], "distillation.kd.teacher_run: required"),
        (["distillation.compresion={name: linear}"], "unknown key distillation.compresion.name"),
        (["task=regression"], "task: Input should be 'multilabel' or 'single_label'"),
        (["frontend.n_mels=128"], "student.n_mels is 96 but the front end makes 128 mel bands"),
        (["frontend.fmax=9000"], "fmax <= sample_rate / 2"),
        (["student.n_mel=96"], "unknown key student.n_mel for student mobile_fcn (did you mean student.n_mels?)"),
        (["teacher=null"], "this system learns from a teacher"),
        (["name=a/b"], "name: use letters, digits"),
    ],
)
def test_impossible_configs_fail_clearly(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config("synth/east_final", overrides, workdir=tmp_path)
    assert message in str(info.value)


def test_kd_without_a_teacher_lr_run_fails_before_any_work(tmp_path, small_config):
    from eastmir.errors import RunError
    from eastmir.pipeline import fit

    with pytest.raises(RunError, match="KD needs a finished TeacherLR run"):
        fit(small_config("kd", workdir=tmp_path), progress=False)
    assert not (tmp_path / "cache").exists()  # failed before features or extraction


def test_bad_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad, workdir=tmp_path)


@pytest.mark.parametrize(
    "override,message",
    [  # the cases: they all used to train normally, or fail late without naming the key
        ("trainer.max_epoch=1", "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)"),
        ("trainr.max_epochs=1", "unknown key trainr.max_epochs (did you mean trainer.max_epochs?)"),
        ("distilation.lambda=0.5", "unknown key distilation.lambda (did you mean distillation.lambda?)"),
        ("distillation.lambda=abc", "distillation.lambda: expected a number, got 'abc'"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer, got 'abc'"),
        ("data.batch_size=0", "data.batch_size: must be at least 2, got 0"),
        ("data.on_error=ignore", "data.on_error: Input should be 'raise' or 'skip', got 'ignore'"),
        ("distillation.feature.stages=[1, x]", "distillation.feature.stages"),
    ],
)
def test_a_wrong_key_or_type_is_one_line_naming_it(override, message, tmp_path, capsys):
    from eastmir.cli import main

    assert main(["fit", "--config", "synth/east_final", "--workdir", str(tmp_path), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: synth/east_final: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "runs").exists()


def test_yaml_with_python_tags_is_refused(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: invalid YAML .*only plain YAML is accepted"):
        load_config(evil, workdir=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_relative_paths_are_made_absolute_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("synth/baseline", ["data.root=some/data"], workdir="work")
    assert cfg.data.root == f"{tmp_path}/some/data" and cfg.workdir == f"{tmp_path}/work"
    assert cfg.cache_dir == f"{tmp_path}/work/cache"


def test_a_saved_teacher_section_is_labelled_as_a_validated_one():
    from eastmir.config import TeacherSection, teacher_label

    ensemble = {"name": "ensemble", "members": [{"name": "musicnn"}, {"name": "precomputed", "id": "mine"}]}
    assert teacher_label(ensemble) == "musicnn+mine"
    assert teacher_label({"name": "precomputed", "id": "mine", "path": "x"}) == "mine"
    assert teacher_label({"name": "aisfx"}) == "aisfx" and teacher_label(None) is None
    assert TeacherSection.model_validate(ensemble).label == teacher_label(ensemble)
    assert teacher_label({"name": "a_teacher_no_longer_registered"}) == "a_teacher_no_longer_registered"


def test_only_a_student_that_added_an_option_brings_it_to_the_fingerprint_check(tmp_path):
    mobile = load_config("synth/baseline", workdir=tmp_path).added_keys
    cp_resnet = load_config("openmic/baseline", workdir=tmp_path).added_keys
    assert mobile["student.dropout_at"] == "head" and "student.dropout_at" not in cp_resnet
    assert mobile["scheduler.name"] == cp_resnet["scheduler.name"] == "plateau"
