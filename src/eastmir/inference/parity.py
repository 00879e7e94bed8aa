"""Checking an exported file against ``eastmir predict``: a runner for ONNX or TorchScript files, the parity check on
audio of several lengths, and the test split's scores of any scoring function."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eastmir.errors import RunError
from eastmir.frontend import LogMelFrontend
from eastmir.inference.model import min_samples
from eastmir.inference.predict import TrainedStudent
from eastmir.inference.quiet import quiet_export
from eastmir.inference.run import LoadedRun
from eastmir.inputs import InputKind


class Runner:
    """Runs an exported file: ``Runner(path)(waveform (batch, samples)) -> probabilities``."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.module = None
            meta = self.session.get_modelmeta().custom_metadata_map.get("eastmir")
        else:
            extra = {"eastmir.json": ""}
            with quiet_export():
                self.module = torch.jit.load(str(path), _extra_files=extra)
            self.session = None
            meta = extra["eastmir.json"]
        self.metadata = json.loads(meta) if meta else {}
        self.minimum = self.metadata.get("min_samples")

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        waveform = np.asarray(waveform, np.float32)
        if self.minimum is not None and waveform.shape[-1] < self.minimum:
            raise RunError(
                f"{self.path}: an input of {waveform.shape[-1]} samples is shorter than the model's minimum of "
                f"{self.minimum} (one analysis window)"
            )
        if self.session is not None:
            return self.session.run(None, {"waveform": np.asarray(waveform, np.float32)})[0]
        with torch.no_grad():
            return self.module(torch.from_numpy(np.asarray(waveform, np.float32))).numpy()


def test_split_scores(run: LoadedRun, score) -> dict[str, float] | None:
    """Test metrics of ``score(waveforms (1, samples)) -> probabilities``, or None when the data is not here."""
    from eastmir.audio import load_audio
    from eastmir.data.manifest import load_manifest
    from eastmir.errors import EastmirError
    from eastmir.metrics import masked_metrics

    try:
        manifest = load_manifest(run.config.data.root)
    except EastmirError:
        return None
    sample_rate = run.config.frontend.sample_rate
    length = round(run.clip_seconds * sample_rate)
    probs, targets, masks = [], [], []
    for clip in manifest.split("test"):
        try:
            audio = load_audio(manifest.audio_file(clip), sample_rate)
        except Exception:
            continue
        audio = np.pad(audio[:length], (0, max(0, length - len(audio))))
        probs.append(score(audio[None])[0])
        targets.append(clip.labels)
        masks.append(clip.mask)
    if not probs:
        return None
    return masked_metrics(torch.tensor(np.stack(probs)), torch.tensor(np.stack(targets)), torch.tensor(np.stack(masks)))


VARIES = 1e-2  # outputs must differ across the parity inputs by more than this for the check to see anything


def parity(
    run: LoadedRun,
    runner: Callable[[np.ndarray], np.ndarray],
    samples: int,
    tolerance: float | None = 1e-3,
    least_spread: float | None = None,
    mean_tolerance: float | None = None,
) -> tuple[str, float]:
    """Check the exported file against ``eastmir predict`` (eager, unfolded) on audio of several lengths, from
    the shortest accepted to several clips; raise :class:`RunError` on a difference above ``tolerance``, or on
    a mean absolute difference (over inputs and classes) above ``mean_tolerance`` (int8: single probabilities
    near a decision move by more, a broken model moves them all). ``runner``: ``waveform (1, samples) ->
    probabilities (1, classes)``, with a ``path``. Returns the note and how much the outputs vary across the
    inputs; with ``least_spread``, outputs that vary less are an error too (the check could not have seen a
    broken export)."""
    reference = TrainedStudent(run, fast=False)
    rng = np.random.default_rng(0)
    lengths = (min_samples(run), samples // 3 + 17, samples, samples // 2 + 1234 + samples, 3 * samples + 5)
    differences, outputs = [], []
    for i, length in enumerate(lengths):
        t = np.arange(length) / reference.sample_rate
        x = (0.3 * np.sin(2 * np.pi * (110 * 2 ** (i / 2)) * t) + 0.05 * rng.standard_normal(length)).astype(np.float32)
        expected = reference.predict(x, reference.sample_rate).probabilities
        got = runner(x[None])[0]
        outputs.append(got)
        differences.append(np.abs(got - expected))
    worst, mean = float(np.max(differences)), float(np.mean(differences))
    spread = float(np.ptp(np.stack(outputs), axis=0).max())
    if (tolerance is not None and worst > tolerance) or (mean_tolerance is not None and mean > mean_tolerance):
        raise RunError(
            f"{runner.path}: the exported model differs from predict by {worst:.2e} (mean {mean:.2e}); please "
            "report this"
        )
    if least_spread is not None and spread < least_spread:
        raise RunError(
            f"{runner.path}: the parity check's outputs vary by only {spread:.2e} across its inputs, so it cannot "
            "tell a broken export from a right one; please report this"
        )
    note = (
        f"largest difference to `eastmir predict` on audio of {len(lengths)} lengths ({lengths[0]} to "
        f"{lengths[-1]} samples): {worst:.2e} (mean {mean:.2e}); the outputs themselves vary by up to "
        f"{spread:.2e} across them"
    )
    return note, spread


def with_varied_weights(run: LoadedRun, seed: int = 0) -> LoadedRun:
    """A copy of ``run`` whose outputs vary widely with the input, for the parity check when the run's own
    barely do (a model trained for an epoch, or one whose units went silent): freshly initialised student
    weights (seeded), BatchNorm statistics measured on a batch of seeded tones and noise (so every stage sees
    unit-scale activations), and the classifier's weights × 10."""
    import copy

    from eastmir.registry import STUDENTS

    varied = copy.deepcopy(run)
    student, config = varied.system.student, run.config.student
    torch.manual_seed(seed)
    student.load_state_dict(STUDENTS.build(config.name, num_classes=len(run.classes), **config.options).state_dict())
    rate = run.config.frontend.sample_rate
    seconds = run.clip_seconds
    t = torch.arange(round(seconds * rate)) / rate
    generator = torch.Generator().manual_seed(seed)
    waves = torch.stack(
        [
            0.3 * torch.sin(2 * torch.pi * 110 * 2 ** (i / 3) * t) + 0.1 * torch.randn(len(t), generator=generator)
            for i in range(8)
        ]
    )
    inputs = LogMelFrontend(run.config.frontend)(waves) if InputKind(student.input_key).reads_logmel else waves
    norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batch
    student.train()
    with torch.no_grad():
        student(inputs)
        head = getattr(student, "head", None)
        if isinstance(head, nn.Linear):
            head.weight.mul_(10.0)
    student.eval()
    return varied
