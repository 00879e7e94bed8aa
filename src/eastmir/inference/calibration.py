"""Static int8 for a run: calibration on its training clips, the PyTorch student in int8 (``predict --precision
int8``, TorchScript int8) and ONNX Runtime's QDQ quantisation (``export --quantize int8``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from eastmir.errors import RunError
from eastmir.frontend import LogMelFrontend
from eastmir.inference.quiet import quiet_export
from eastmir.inference.run import LoadedRun

CALIBRATION_CLIPS = 32


INT8_TOLERANCE = 5e-2  # the mean probability change an int8 export may show against predict (float32)
FLOAT16_TOLERANCE = 2e-2  # the mean probability change a float16 export may show against predict (float32)


def calibration_clips(
    run: LoadedRun, most: int = CALIBRATION_CLIPS, purpose: str = "--quantize int8"
) -> list[np.ndarray]:
    """Up to ``most`` clips of the run's training split (one clip long, at its rate, in manifest order), or of
    the recordings ``run.calibration`` names (each cut into clip-long pieces, in order): what int8 calibration
    measures the activations' ranges on."""
    from eastmir.audio import load_audio
    from eastmir.data.manifest import load_manifest
    from eastmir.errors import EastmirError

    if run.calibration:
        return recording_clips(run, most)
    root = run.config.data.root
    try:
        manifest = load_manifest(root)
        clips = manifest.split("train")[:most]
    except EastmirError:
        clips = []
    if not clips:
        raise RunError(
            f"{purpose} calibrates on the run's training clips, which are not on this machine ({root}, the data.root "
            "its checkpoint holds): prepare or link the dataset there, or "
            + (
                "pass --calibrate-on RECORDINGS (audio like what the model will hear), or export without --quantize"
                if purpose == "--quantize int8"
                else "choose another precision"
            )
        )
    rate = run.config.frontend.sample_rate
    length = round(run.clip_seconds * rate)
    waves = []
    for clip in clips:
        audio = load_audio(manifest.audio_file(clip), rate)
        waves.append(np.pad(audio[:length], (0, max(0, length - len(audio)))).astype(np.float32))
    return waves


def recording_clips(run: LoadedRun, most: int = CALIBRATION_CLIPS) -> list[np.ndarray]:
    """Up to ``most`` clip-long pieces of the recordings ``run.calibration`` names, at the run's rate, in order
    (a last piece shorter than a clip padded with zeros); a file that cannot be read is a one-line error."""
    from eastmir.audio import AudioDecodeError, load_audio

    rate = run.config.frontend.sample_rate
    length = round(run.clip_seconds * rate)
    pieces: list[np.ndarray] = []
    for path in run.calibration:
        try:
            audio = load_audio(path, rate)
        except AudioDecodeError as err:
            raise RunError(f"--calibrate-on {path}: {err}") from None
        for at in range(0, len(audio), length):
            piece = audio[at : at + length]
            pieces.append(np.pad(piece, (0, length - len(piece))).astype(np.float32))
            if len(pieces) == most:
                return pieces
    return pieces


def int8_student(run: LoadedRun, purpose: str) -> nn.Module:
    """The run's student with its convolution blocks in static int8 (:mod:`eastmir.inference.int8`), calibrated
    on :func:`calibration_clips` (one clip each, through the run's front end, in batches of 8). ``purpose``: the
    option that asked for it, named in the errors."""
    from eastmir.inference.int8 import Int8Error, quantize_student_int8

    waves = torch.from_numpy(np.stack(calibration_clips(run, purpose=purpose)))
    frontend = LogMelFrontend(run.config.frontend) if run.input_key.reads_logmel else None
    with torch.no_grad():
        inputs = [frontend(w) if frontend is not None else w for w in waves.split(8)]
    try:
        model, _, _ = quantize_student_int8(run.student.eval(), inputs)
    except Int8Error as err:
        raise RunError(f"{run.directory}: {err}; run without {purpose}") from None
    return model


def quantize_int8(run: LoadedRun, float_path: Path, path: Path) -> None:
    """Static int8 quantisation of an exported model (ONNX Runtime, QDQ): the convolutions with per-channel int8
    weights and uint8 activations whose ranges are calibrated on the run's training clips; the front end and the
    classifier stay float32. Dynamic quantisation was 3.4× slower than float32 on a CPU with VNNI; static lets
    ONNX Runtime run integer convolutions end to end."""
    quantize_static_int8(float_path, path, ({"waveform": w[None]} for w in calibration_clips(run)))


def quantize_static_int8(float_path: Path, path: Path, feeds) -> None:
    """``float_path`` → ``path`` in static int8 (QDQ, per-channel int8 weights, uint8 activations), calibrated
    on ``feeds``: an iterable of ONNX input dicts. What ``export --quantize int8`` and ``complexity`` run: the
    convolutions in int8, the front end and the classifier float32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with quiet_export():
        quantize_static(
            str(float_path),
            str(path),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],  # not the front end's products: its power spans decades
        )
