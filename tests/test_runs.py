"""Runs that can be trusted: exact resume after SIGTERM, unreadable checkpoints named,
self-contained run directories, unfinished runs reported."""

import json
import os
import shutil
import signal

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from eastmir import load_run, load_student, pipeline
from eastmir.errors import TrainingError
from eastmir.reporting.tables import markdown_table, read_runs


class SigtermAt(Callback):
    """Sends this process a real SIGTERM at the end of an epoch or after a batch of it."""

    def __init__(self, epoch: int, batch: int | None = None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.batch is not None and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_epoch_end(self, trainer, module):
        if self.batch is None and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


def augmented(small_config, name, *extra):
    """EAsT_Final with mixup and SpecAugment: every step draws random numbers."""
    return small_config(
        "east_final",
        f"name={name}",
        "trainer.max_epochs=3",
        "augment={mixup_alpha: 0.3, spec_augment: {freq: 8, time: 20}}",
        *extra,
    )


def best_state(run_dir):
    blob = json.loads((run_dir / "metrics.json").read_text())
    return blob, torch.load(run_dir / blob["best_checkpoint"], weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def straight(small_synth, small_synth_embeddings, workdir):
    from eastmir.config import load_config

    cfg = load_config(
        "synth/east_final",
        [
            "name=straight",
            "trainer.max_epochs=3",
            "data.batch_size=16",
            "augment={mixup_alpha: 0.3, spec_augment: {freq: 8, time: 20}}",
        ],
        workdir=workdir,
    )
    return best_state(pipeline.fit(cfg, progress=False))


@pytest.mark.parametrize("where", [{"epoch": 0}, {"epoch": 1, "batch": 1}], ids=["epoch-boundary", "mid-epoch"])
def test_a_run_resumed_after_sigterm_equals_an_uninterrupted_one(straight, small_config, where):
    """The issue's case: resumed after SIGTERM at an epoch boundary, test mAP .352 vs .341."""
    name = f"killed-{where['epoch']}-{where.get('batch')}"
    with pytest.raises(SystemExit):
        pipeline.fit(augmented(small_config, name), progress=False, callbacks=[SigtermAt(**where)])
    run_dir = pipeline.fit(augmented(small_config, name), progress=False)  # the same command again
    resumed, resumed_state = best_state(run_dir)
    reference, reference_state = straight
    assert resumed["test"] == reference["test"]
    assert resumed["steps"] == reference["steps"] and resumed["epochs"] == reference["epochs"]
    assert resumed["best_checkpoint"] == reference["best_checkpoint"]
    assert resumed_state.keys() == reference_state.keys()
    assert all(torch.equal(resumed_state[k], reference_state[k]) for k in reference_state)
    epochs = [line.split(",") for line in (run_dir / "logs" / "version_0" / "metrics.csv").read_text().splitlines()]
    assert len(epochs) > 1  # one log across the interruption


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_an_unreadable_last_checkpoint_is_named_with_the_way_on(
    small_synth, small_synth_embeddings, small_config, damage
):
    cfg = small_config("baseline", f"name=broken-{damage}", "trainer.max_epochs=2")
    run_dir = pipeline.fit(cfg, progress=False)
    (run_dir / "metrics.json").unlink()  # as if stopped before the end
    last = run_dir / "checkpoints" / "last.ckpt"
    blob = last.read_bytes()
    last.write_bytes(blob[: len(blob) // 3] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(TrainingError) as info:
        pipeline.fit(cfg, progress=False)
    message = str(info.value)
    assert message.startswith(f"{last}: unreadable checkpoint") and "\n" not in message
    assert "delete it to resume from the previous checkpoint (best-epoch" in message and "--overwrite" in message
    last.unlink()  # the way on that the message gives
    assert (pipeline.fit(cfg, progress=False) / "metrics.json").is_file()


def test_a_run_directory_loads_anywhere_alone(
    small_synth, small_synth_embeddings, small_config, fake_teacher_run, tmp_path
):
    """A KD run used to re-read its teacher_run when loaded, so it could not be loaded elsewhere."""
    teacher_lr = pipeline.fit(small_config("teacher_lr", "name=lr_for_kd"), progress=False)
    cfg = small_config("kd", "name=kd_portable", f"distillation.kd.teacher_run={teacher_lr}")
    run_dir = pipeline.fit(cfg, progress=False)
    here = load_run(run_dir)
    moved = tmp_path / "elsewhere" / "kd_portable"
    shutil.copytree(run_dir, moved)
    shutil.rmtree(teacher_lr)  # neither the TeacherLR run …
    there = load_run(moved)  # … nor the store nor the dataset is needed
    assert there.classes == small_synth.classes and there.input_key == "logmel"
    x = torch.randn(2, 96, 126)
    assert torch.equal(here.logits(x), there.logits(x))
    assert torch.equal(there.system.distiller.teacher_head.head.weight, here.system.distiller.teacher_head.head.weight)
    frontend = there.frontend()
    assert frontend(torch.randn(1, 16000)).shape == (1, 96, 50)  # the run's front end: pre-emphasis drops a sample


def test_report_marks_unfinished_runs_instead_of_aborting(small_synth, small_synth_embeddings, small_config, tmp_path):
    done = pipeline.fit(small_config("baseline", "name=report_done"), progress=False)
    half = pipeline.fit(small_config("baseline", "name=report_half", "trainer.max_epochs=2"), progress=False)
    (half / "metrics.json").unlink()
    rows = read_runs([done, half, tmp_path])
    table = markdown_table(rows)
    assert "| Baseline (unfinished: epoch 2 of 2) | mobile_fcn | — | — |" in table
    assert f"| {tmp_path.name} (not a run directory) |" in table
    assert table.splitlines()[2].startswith("| Baseline | mobile_fcn | — | 0.")


@pytest.mark.parametrize("name", ["v1-baseline", "v2-east_final"])
def test_a_run_saved_by_an_earlier_release_still_loads(name, data_dir, tmp_path):
    """Checkpoints hold their config; a run saved before config_version existed (version 1), or saved with
    a plain-dict config before the typed RunConfig (version 2, with a teacher and a regulariser), is migrated
    on load, never refused, and gives the logits it gave then."""
    import numpy as np

    from eastmir.config import CONFIG_VERSION

    saved = data_dir / "runs" / name
    run = load_run(saved)
    x = torch.randn(3, 96, 101, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(run.logits(x), torch.from_numpy(np.load(saved / "logits_of_seeded_input.npy")), atol=1e-6)
    assert run.config.config_version == CONFIG_VERSION and run.classes[:2] == ["accordion", "banjo"]
    copy = tmp_path / name
    shutil.copytree(saved, copy)
    from eastmir.errors import RunError
    from eastmir.rundir import RunDirectory

    config = run.config
    if config.feature:  # its time alignment is now by frame periods: resuming would change what it computes
        with pytest.raises(RunError, match=r"distillation\.feature\.align: <unset> → periods"):
            RunDirectory(copy).check_fingerprint(config.to_dict(), added=config.added_keys)
        config = config.changed({"distillation": {"feature": {"align": "ceil"}}})  # the alignment it had
    # the same settings (keys added since at the values that do what the run did): a rerun continues it
    RunDirectory(copy).check_fingerprint(config.to_dict(), added=config.added_keys)
    with pytest.raises(RunError, match="seed: 0 → 5"):
        RunDirectory(copy).check_fingerprint(config.changed({"seed": 5}).to_dict(), added=config.added_keys)
    stages = config.changed({"student": {"dropout_at": "stages"}})  # Mobile FCN's added option, at another value
    with pytest.raises(RunError, match=r"student\.dropout_at: <unset> → stages"):
        RunDirectory(copy).check_fingerprint(stages.to_dict(), added=stages.added_keys)
    with pytest.raises(RunError, match=r"scheduler\.name: <unset> → plateau"):  # without them it would refuse
        RunDirectory(copy).check_fingerprint(config.to_dict())
    assert load_student(copy).predict(np.zeros(32000, np.float32), 16000).probabilities.shape == (17,)


def test_a_config_from_a_newer_release_is_refused_in_one_line():
    from eastmir.config import CONFIG_VERSION, migrate
    from eastmir.errors import ConfigError

    assert migrate({"name": "x"}) == {"name": "x", "config_version": CONFIG_VERSION}
    with pytest.raises(ConfigError, match=f"written by a newer eastmir \\(config version {CONFIG_VERSION + 1};"):
        migrate({"name": "x", "config_version": CONFIG_VERSION + 1}, "ckpt")
