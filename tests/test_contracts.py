"""Adding a student is one file plus its registration: a toy student, registered here and nowhere else,
goes through fit, predict, export and complexity with no other edit to eastmir."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from eastmir import load_run, load_student, pipeline
from eastmir.config import load_config
from eastmir.inference.complexity import interleaved, measured_students, student_row
from eastmir.inference.export import export
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


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
