"""``eastmir export RUN --format onnx|torchscript [--quantize int8]``: one file to ship.

The exported model takes a mono waveform ``(batch, samples)`` at the run's
sample rate, of any length (the time axis is dynamic; at least the student's
minimum), and returns probabilities ``(batch, classes)`` (sigmoid, or softmax
for a single-label run) for the whole input it is given: the log-mel front
end is inside the graph (in ONNX, its spectrum as matrix products,
:class:`~eastmir.frontend.MatmulPowerSpectrum`: ONNX Runtime's STFT operator
took 4× as long),
BatchNorm is folded into the convolutions. For long recordings, window them as
``eastmir predict`` does (the training clip length, half of it as hop) and
average (the exported model does exactly that for any input longer than a
clip). Class names, thresholds, sample rate and the rest ride along: ONNX
``metadata_props`` (key ``eastmir``, JSON) or TorchScript ``_extra_files``
(``eastmir.json``). A model card (``<file>.md``) is written beside it.

``--quantize int8``: static int8, calibrated on 32 of the run's training
clips (which must be on this machine): for ONNX, ONNX Runtime's QDQ
quantisation of the convolutions (the front end and the classifier stay
float32); for TorchScript, the student's convolution blocks in PyTorch's int8
(:mod:`eastmir.inference.int8`, what ``predict --precision int8`` runs). The
export prints the change in test mAP, measured on the run's test split when its
data is on this machine.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eastmir.errors import RunError
from eastmir.inference.calibration import FLOAT16_TOLERANCE, INT8_TOLERANCE, quantize_int8
from eastmir.inference.card import metadata, model_card
from eastmir.inference.coreml import CHECKED_ON_LINUX
from eastmir.inference.model import inference_model, min_samples
from eastmir.inference.parity import VARIES, Runner, parity, test_split_scores, with_varied_weights
from eastmir.inference.quiet import quiet_export
from eastmir.inference.run import LoadedRun
from eastmir.outputs import Outputs


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise RunError(f"ONNX export needs {err.name}: pip install 'eastmir[export]'") from None


def export_onnx(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    _need_onnx()
    import onnx

    model, samples = inference_model(run)
    if model.frontend is not None:
        model.frontend.for_onnx()  # the spectrum by matrix products: ONNX Runtime's STFT operator is slow
    # a batch of 2 and several pooled frames: sizes of 1 would be specialised by the exporter
    example = torch.zeros(2, max(2 * samples, 4 * min_samples(run)))
    dims = ({0: torch.export.Dim("batch", min=1, max=4096), 1: torch.export.Dim("samples", min=min_samples(run))},)
    float_path = path if not quantize else path.with_name(path.stem + ".float32.onnx")
    with quiet_export():
        torch.onnx.export(
            model,
            (example,),
            str(float_path),
            input_names=["waveform"],
            output_names=["probabilities"],
            dynamo=True,
            dynamic_shapes=dims,
            verbose=False,
        )
    if quantize:
        quantize_int8(run, float_path, path)
    proto = onnx.load(str(path))  # with any weights the exporter wrote beside it (<file>.data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "eastmir", json.dumps(metadata(run, quantize))
    onnx.save(proto, str(path), save_as_external_data=False)  # one self-contained file (weights below 2 GB)
    for extra in (path.with_name(path.name + ".data"), float_path, float_path.with_name(float_path.name + ".data")):
        if extra != path:
            extra.unlink(missing_ok=True)
    return path


def export_torchscript(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    model, samples = inference_model(run, int8=quantize == "int8")
    with torch.no_grad(), quiet_export():
        traced = torch.jit.freeze(torch.jit.trace(model, torch.zeros(2, samples), check_trace=False).eval())
    with quiet_export():  # TorchScript is deprecated in recent PyTorch (it says so on every save and load)
        torch.jit.save(traced, str(path), _extra_files={"eastmir.json": json.dumps(metadata(run, quantize))})
    return path


def export_litert(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    from eastmir.inference.litert import export_litert as export

    return export(run, path, quantize)


def _litert_runner(run: LoadedRun, path: Path):
    from eastmir.inference.litert import LiteRTRunner
    from eastmir.inference.window_model import window_model

    return LiteRTRunner(path, window_model(run, fast=False)[1])


def export_coreml(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    from eastmir.inference.coreml import export_coreml as export

    return export(run, path, quantize)


def _coreml_runner(run: LoadedRun, path: Path):
    from eastmir.inference.coreml import CoreMLRunner
    from eastmir.inference.window_model import window_model

    return CoreMLRunner(path, window_model(run, fast=False)[1], len(run.classes))


@dataclass(frozen=True)
class ExportFormat:
    """One ``--format``: its file suffix, ``exporter(run, path, quantize) -> path`` and ``runner(run, path)``,
    the exported file run as an app runs it (``runner(waveform (1, samples)) -> probabilities (1, classes)``,
    what the parity check compares with ``predict``)."""

    suffix: str
    exporter: Callable[[LoadedRun, Path, str | None], Path]
    runner: Callable[[LoadedRun, Path], Callable[[np.ndarray], np.ndarray]]
    windows: bool = False  # the file scores one window (its inputs described in the card), not a recording
    quantizations: tuple[str, ...] = ("int8",)  # what --quantize takes for this format
    bundle: bool = False  # the output is a folder (a Core ML package), not one file
    note: str | None = None  # what the card says about how the export was checked, where that needs saying


FORMATS = {
    "onnx": ExportFormat(".onnx", export_onnx, lambda run, path: Runner(path)),
    "torchscript": ExportFormat(".pt", export_torchscript, lambda run, path: Runner(path)),
    "litert": ExportFormat(".tflite", export_litert, _litert_runner, windows=True),
    "coreml": ExportFormat(
        ".mlpackage",
        export_coreml,
        _coreml_runner,
        windows=True,
        quantizations=("float16",),
        bundle=True,
        note=CHECKED_ON_LINUX,
    ),
}

# (largest, mean) difference to predict an export may show. Reduced precision is bounded on the mean over the
# inputs and classes: it moves single probabilities near a decision (or behind large logits) by more than its
# typical error, while a broken model moves them all
TOLERANCES = {None: (1e-3, None), "float16": (None, FLOAT16_TOLERANCE), "int8": (None, INT8_TOLERANCE)}


def export_path(run: LoadedRun, fmt: str, out: Path | None, quantize: str | None) -> Path:
    """Where ``export`` writes: ``out``, else ``RUN/export/model[-int8].onnx`` (``.pt``, ``.tflite``,
    ``[-float16].mlpackage``)."""
    name = f"model{f'-{quantize}' if quantize else ''}{FORMATS[fmt].suffix}"
    return Path(out).absolute() if out else run.directory / "export" / name


def run_inputs(run: LoadedRun) -> list[Path]:
    """What an export or prediction reads from a run directory: never an output."""
    files = [run.checkpoint, run.directory / "checkpoints", *(run.directory / n for n in ("config.yaml",))]
    return [*files, run.directory / "metrics.json", run.directory / "fingerprint.json"]


def export(
    run: LoadedRun,
    fmt: str,
    out: Path | None = None,
    quantize: str | None = None,
    outputs: Outputs | None = None,
) -> tuple[Path, Path, list[str]]:
    """Export ``run``; returns the file, its model card (``<file>.md``) and notes (parity, quantisation effect).

    Both files go through ``outputs`` (:class:`eastmir.outputs.Outputs`): neither replaces a file eastmir did not
    write unless it allows overwriting, and neither may be one of the run's own files."""
    if fmt not in FORMATS:
        raise RunError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    form = FORMATS[fmt]
    if quantize is not None and quantize not in form.quantizations:
        raise RunError(f"--format {fmt} takes --quantize {' or '.join(form.quantizations)}, not {quantize}")
    outputs = (outputs or Outputs()).with_inputs(run_inputs(run))
    final = export_path(run, fmt, out, quantize)
    if out is None and not final.parent.is_dir():
        outputs.folder(final.parent, "export folder")
    outputs.check_bundle(final) if form.bundle else outputs.check(final)
    outputs.check(final.with_suffix(".md"), "model card")
    # everything is made in a temporary folder beside the result and moved into place once complete, so a
    # full disk or an interrupt never leaves a model without its metadata or card
    with tempfile.TemporaryDirectory(prefix=".export-", dir=final.parent) as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance.treespec, LeafSpec.*")  # torch's own, harmless
        path = Path(folder) / final.name
        notes = _export_into(run, fmt, path, quantize)
        window = None
        if FORMATS[fmt].windows:
            from eastmir.inference.window_model import window_model

            window = window_model(run, fast=False)[1].card()
        card = model_card(run, path, fmt, quantize, notes, window)
        if form.bundle:
            outputs.write_bundle(final, path)
        else:
            outputs.write(final, path.read_bytes())
        outputs.write(final.with_suffix(".md"), card.read_bytes(), "model card")  # the card last
    return final, final.with_suffix(".md"), notes


def _export_into(run: LoadedRun, fmt: str, path: Path, quantize: str | None) -> list[str]:
    exporter, runner_of = FORMATS[fmt].exporter, FORMATS[fmt].runner
    exporter(run, path, quantize)
    reference, samples = inference_model(run, fast=False)
    runner = runner_of(run, path)
    worst, mean = TOLERANCES[quantize]
    note, spread = parity(run, runner, samples, worst, mean_tolerance=mean)
    notes = [note] if FORMATS[fmt].note is None else [FORMATS[fmt].note, note]
    if spread < VARIES and quantize != "int8":  # the outputs hardly depend on the input: check on weights that do
        # (an int8 export's own check is its test mAP change below: its ranges are calibrated for real clips)
        varied = with_varied_weights(run)
        with tempfile.TemporaryDirectory(prefix=".parity-", dir=path.parent) as folder:
            copy_path = Path(folder) / path.name
            exporter(varied, copy_path, quantize)
            again, _ = parity(varied, runner_of(varied, copy_path), samples, worst, least_spread=VARIES)
        notes.append(
            f"the run's outputs vary by only {spread:.2e} across those inputs, too little to see a broken export, "
            f"so the same export was checked again with its weights moved by seeded noise: {again}"
        )
    if quantize:

        def eager(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return reference(torch.from_numpy(x)).numpy()

        before, after = test_split_scores(run, eager), test_split_scores(run, runner)
        if before and after and "mAP" in before:
            notes.append(
                f"{quantize} test mAP {after['mAP']:.4f} against {before['mAP']:.4f} in float32 "
                f"({after['mAP'] - before['mAP']:+.4f})"
            )
        else:
            notes.append(f"{quantize} test mAP not measured: the run's test split is not on this machine")
    return notes
