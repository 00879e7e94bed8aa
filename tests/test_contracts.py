"""Adding a student is one file plus its registration: a toy student, registered here and nowhere else,
goes through fit, predict, export and complexity with no other edit to eastmir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from eastmir import load_run, load_student, pipeline
from eastmir.config import load_config
from eastmir.data.datasets.base import Dataset
from eastmir.inference.complexity import interleaved, measured_students, student_row
from eastmir.inference.export import export
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput
from eastmir.teachers.base import Teacher


class ToyStudent(Student):
    """One convolution over the mel bands, one stage: ``(batch, mels, frames)`` → logits ``(batch, classes)``."""

    stage_dims = (8,)
    stage_hops = (1,)
    min_frames = 4
    complexity_options: ClassVar[dict[str, Any]] = {"width": 8}

    def __init__(self, num_classes: int, n_mels: int = 96, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_mels, width, 3, padding=1)
        self.norm = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, logmel: torch.Tensor) -> StudentOutput:
        x = torch.relu(self.norm(self.conv(logmel)))  # (batch, width, frames)
        return StudentOutput(self.head(x.mean(dim=-1)), [x.transpose(1, 2)])


@pytest.fixture
def toy_student():
    STUDENTS.register("toy_student")(ToyStudent)
    yield "toy_student"
    STUDENTS.remove("toy_student")


def test_a_registered_student_runs_fit_predict_export_and_complexity(
    toy_student, small_synth, small_synth_embeddings, small_config, tmp_path, capsys
):
    config = small_config("east_final", f"student={{name: {toy_student}}}", "name=toy_east_final")
    assert config.student.capabilities is ToyStudent and config.input_key == "logmel"
    run_dir = pipeline.fit(config, progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["student"] == toy_student and 0 <= metrics["test"]["mAP"] <= 1
    assert metrics["backbone_parameters"] == sum(
        p.numel() for n, p in ToyStudent(17).named_parameters() if "head" not in n
    )

    student = load_student(run_dir)
    clip = small_synth.audio_file(small_synth.clips[0])
    (prediction,) = student.predict_files([clip], progress=False)
    assert len(prediction.probabilities) == len(small_synth.classes)
    audio, rate = sf.read(clip, dtype="float32")
    other = tmp_path / "other.wav"
    sf.write(other, np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32) * 0.3, rate)
    (noise,) = student.predict_files([other], progress=False)
    assert not np.allclose(prediction.probabilities, noise.probabilities)  # the outputs depend on the input

    onnx_file, card, notes = export(load_run(run_dir), "onnx", tmp_path / "toy.onnx")
    assert onnx_file.is_file() and card.is_file() and any("largest difference to `eastmir predict`" in n for n in notes)

    assert toy_student in measured_students()
    row = student_row(toy_student, 1, tmp_path)
    assert row.parameters == sum(p.numel() for n, p in ToyStudent(20).named_parameters() if "head" not in n)
    assert interleaved([row], least_rounds=2, seconds=0) == 2
    assert all(speed > 0 for speed in row.speed.values()) and "ONNX Runtime" in row.speed


def test_a_student_of_no_registry_is_refused_naming_the_valid_ones(tmp_path):
    from eastmir.errors import ConfigError

    with pytest.raises(ConfigError, match=r"student.name: unknown student 'toy_student'.*valid students: cp_resnet"):
        load_config("synth/baseline", ["student={name: toy_student}"], workdir=tmp_path)


def test_optimisers_schedulers_and_compressions_come_from_their_registries(tmp_path):
    from eastmir.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer.name: unknown optimiser 'adamw' \(did you mean adam\?\)"):
        load_config("synth/baseline", ["optimizer.name=adamw"], workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"distillation.compression.name: unknown compression 'pca'"):
        load_config("synth/east_final", ["distillation.compression={name: pca}"], workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"scheduler.name: unknown scheduler 'cosine'; valid schedulers: plateau"):
        load_config("synth/baseline", ["scheduler.name=cosine"], workdir=tmp_path)
    assert load_config("synth/baseline", ["optimizer.name=sgd"], workdir=tmp_path).optimizer.name == "sgd"


# ------------------------------------------------------------------ a dataset and a teacher, declared the same way


def toy_tones(root, progress: bool = True, n_clips: int = 48, seed: int = 0):
    """A toy dataset: ``n_clips`` 2.5 s clips at 16 kHz of one to two of four tones in noise, written under
    ``root``; 70 / 10 / 20 % train / valid / test; the tones are the classes."""
    from eastmir.data.manifest import Clip, Manifest

    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = ["low", "mid", "high", "top"]
    t = np.arange(40000) / 16000
    clips = []
    for i in range(n_clips):
        labels = (rng.random(4) < 0.4).astype(np.float32)
        labels[i % 4] = 1.0
        audio = 0.05 * rng.standard_normal(len(t))
        for k in np.flatnonzero(labels):
            audio += 0.2 * np.sin(2 * np.pi * 220 * 2**k * t)
        sf.write(root / "audio" / f"t{i:03d}.wav", audio.astype(np.float32), 16000)
        split = "train" if i % 10 < 7 else "valid" if i % 10 == 7 else "test"
        clips.append(Clip(f"t{i:03d}", f"audio/t{i:03d}.wav", split, labels, np.ones(4, bool), 2.5))
    manifest = Manifest("toy_tones", classes, clips, root, "multilabel")
    manifest.save()
    return manifest


class ToyTones(Dataset):
    """Four tones as four classes, declared as every shipped dataset is."""

    num_classes, task, clip_seconds = 4, "multilabel", 2.5
    prepare = staticmethod(toy_tones)


class ToyTeacher(Teacher):
    """One clip-level vector: the log energies of 16 fixed random projections of the frames' spectra."""

    name, version, dim, frame_seconds, sample_rate = "toy_teacher", "1", 16, None, 16000

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(257, 16, generator=torch.Generator().manual_seed(0)).abs())

    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveforms, 512, 256, window=torch.hann_window(512), return_complex=True).abs() ** 2
        return torch.log(spec.mean(-1) @ self.projection + 1e-6)[:, None, :]  # (batch, 1, 16)


@pytest.fixture
def toy_components():
    from eastmir.registry import DATASETS, TEACHERS

    DATASETS.register("toy_tones")(ToyTones)
    TEACHERS.register("toy_teacher")(ToyTeacher)
    yield
    DATASETS.remove("toy_tones")
    TEACHERS.remove("toy_teacher")


def test_a_registered_dataset_and_teacher_run_prepare_extract_fit_and_predict(toy_components, tmp_path, capsys):
    """A dataset and a teacher registered here and nowhere else go through the commands as the shipped ones do:
    prepare → extract → fit (EAsT_Final, this teacher) → predict, with no other edit to eastmir."""
    from eastmir.cli import main

    root, work = tmp_path / "tones", tmp_path / "work"
    assert main(["data", "prepare", "toy_tones", "--root", str(root), "--set", "n_clips=40"]) == 0
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["dataset"] == "toy_tones" and len(manifest["clips"]) == 40
    args = ["extract", "--teacher", "toy_teacher", "--dataset", str(root), "--workdir", str(work), "--no-progress"]
    assert main(args) == 0
    assert "toy_teacher (dim 16, one vector per clip)" in capsys.readouterr().out
    fit = ["fit", "--config", "synth/east_final", "--workdir", str(work), "--no-progress", "--set"]
    settings = [f"data.root={root}", "data.dataset=toy_tones", "teacher={name: toy_teacher}", "trainer.max_epochs=1"]
    assert main([*fit, *settings, "name=toy", "data.clip_seconds=2.5"]) == 0
    metrics = json.loads((work / "runs" / "toy" / "metrics.json").read_text())
    assert metrics["dataset"] == "toy_tones" and metrics["teacher"] == "toy_teacher"
    assert metrics["classes"] == ["low", "mid", "high", "top"] and 0.0 <= metrics["test"]["mAP"] <= 1.0
    (prediction,) = load_student(work / "runs" / "toy").predict_files([root / "audio" / "t000.wav"], progress=False)
    assert prediction.probabilities.shape == (4,)


def test_an_unregistered_dataset_or_teacher_is_refused_naming_the_valid_ones(tmp_path, capsys):
    from eastmir.cli import main

    assert main(["data", "prepare", "toy_tones", "--root", str(tmp_path)]) == 2
    assert "toy_tones" in capsys.readouterr().err
    assert main(["extract", "--teacher", "toy_teacher", "--dataset", str(tmp_path)]) == 2
    assert "toy_teacher" in capsys.readouterr().err
