"""``eastmir export --format litert``: the run's window model (:mod:`eastmir.inference.window_model`) as a
``.tflite`` file for LiteRT (Android, iOS, Linux, microcontroller-class boards), float32 or static int8.

The window model is exported with ``torch.export`` here, in eastmir's environment, and converted by
``litert-torch`` in the converter's own (:mod:`eastmir.inference.converter_env`). int8 is calibrated as the
ONNX int8 export is, on the run's training clips (:func:`~eastmir.inference.calibration.calibration_clips`),
each clip's windows as the app would cut them. The interpreter (``ai-edge-litert``, extra ``litert``) runs in
eastmir's environment: the parity check and ``eastmir complexity`` use it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from eastmir.errors import RunError
from eastmir.inference.calibration import calibration_clips
from eastmir.inference.converter_env import run_worker
from eastmir.inference.quiet import quiet_export
from eastmir.inference.run import LoadedRun
from eastmir.inference.window_model import WindowedRunner, WindowModel, WindowPlan, example_inputs, window_model


def _need_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RunError("LiteRT export needs its interpreter: pip install 'eastmir[litert]'") from None
    return Interpreter


def export_litert(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    """Write the run's window model to ``path`` (``.tflite``); ``quantize="int8"``: static int8 of the student."""
    _need_interpreter()
    model, plan = window_model(run)
    calibration = None
    if quantize:
        windows = [plan.inputs(clip) for clip in calibration_clips(run)]
        calibration = tuple(np.concatenate(part) for part in zip(*windows))
    return convert(model, plan, path, calibration)


def convert(
    model: WindowModel, plan: WindowPlan, path: Path, calibration: tuple[np.ndarray, np.ndarray] | None = None
) -> Path:
    """Write the window ``model`` (exported with the inputs ``plan`` describes) to ``path`` (``.tflite``) in the
    converter's environment; ``calibration``: ``(segments (n, segment_samples), valid (n,))`` to quantise the
    student to static int8 on, or ``None`` for float32."""
    with tempfile.TemporaryDirectory(prefix=".litert-", dir=path.parent) as folder:
        program = Path(folder) / "window.pt2"
        with quiet_export():
            torch.export.save(torch.export.export(model, example_inputs(plan)), str(program))
        extra = []
        if calibration is not None:
            clips = Path(folder) / "calibration.npz"
            np.savez(clips, segment=calibration[0], valid=calibration[1])
            extra = ["--calibration", str(clips)]
        run_worker(str(program), str(path), *extra)
    return path


class LiteRTRunner(WindowedRunner):
    """A ``.tflite`` window model in the LiteRT interpreter (XNNPACK on ``threads`` threads), driven as an app
    drives it (:class:`~eastmir.inference.window_model.WindowedRunner`): ``runner(waveform (1, samples))``."""

    def __init__(self, path: Path, plan: WindowPlan, threads: int = 1) -> None:
        interpreter = _need_interpreter()(model_path=str(path), num_threads=threads)
        self.signature = interpreter.get_signature_runner()
        inputs = sorted(self.signature.get_input_details())  # the exported program's arguments, in order
        if len(inputs) != 2:
            raise RunError(f"{path}: not an eastmir window model (inputs {inputs}, expected segment and valid)")
        self.names, self.output = inputs, next(iter(self.signature.get_output_details()))
        super().__init__(path, self.window, plan)

    def window(self, segment: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``segment (1, segment_samples)``, ``valid (1,)`` → probabilities ``(1, classes)``."""
        return self.signature(**dict(zip(self.names, (segment, valid))))[self.output]
