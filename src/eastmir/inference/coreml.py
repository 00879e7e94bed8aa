"""``eastmir export --format coreml [--quantize float16]``: the run's window model
(:mod:`eastmir.inference.window_model`) as a Core ML package (``.mlpackage``, an ML program, iOS 16 / macOS 13
and later), float32 or float16, converted by ``coremltools`` in eastmir's environment (extra ``coreml``).

Core ML predicts only on Apple's systems. Here the export checks what can be checked on any OS: the package's
inputs and output (names, shapes, types), and a run of its ML program, read back from the saved package with
its weights, by :mod:`eastmir.inference.mil_run`, driven as an app drives the window model, against
``predict``. The model card says so.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eastmir.errors import RunError
from eastmir.inference.card import metadata
from eastmir.inference.quiet import quiet_export
from eastmir.inference.run import LoadedRun
from eastmir.inference.window_model import WindowedRunner, WindowModel, WindowPlan, example_inputs, window_model

PRECISIONS = {None: "FLOAT32", "float16": "FLOAT16"}
CHECKED_ON_LINUX = (
    "Core ML predicts only on Apple's systems, so this export was checked where it was made by running the "
    "saved package's ML program (its operations and weights, read back from the file) with eastmir's own "
    "interpreter of those operations (NumPy and PyTorch; float16 results rounded to float16 after every "
    "operation), not with Apple's runtime, whose GPU and Neural Engine kernels may round differently"
)


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[None]:
    """coremltools on Linux says on import that its runtime is missing, and that it has not been tested with
    this torch or scikit-learn; it shows progress bars while converting. None of that is the user's news."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), quiet_export():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def coremltools_module():
    """``coremltools``, imported quietly (:func:`quiet_coremltools`), or :class:`RunError` saying how to install it."""
    try:
        with quiet_coremltools():
            import coremltools
    except ImportError:
        raise RunError("Core ML export needs coremltools: pip install 'eastmir[coreml]'") from None
    return coremltools


def without_aliases(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``aten.alias`` nodes (no-ops torch.export emits) removed: coremltools' converter has no rule for them."""
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def convert(model: WindowModel, plan: WindowPlan, quantize: str | None = None) -> Any:
    """The window ``model`` as a Core ML ML program (``coremltools.models.MLModel``, not saved), exported with
    the inputs ``plan`` describes; ``quantize="float16"``: computed in float16."""
    ct = coremltools_module()
    with quiet_export():
        program = without_aliases(torch.export.export(model, example_inputs(plan)).run_decompositions({}))
    with quiet_coremltools():
        return ct.convert(
            program,
            convert_to="mlprogram",
            outputs=[ct.TensorType(name="probabilities", dtype=np.float32)],  # float32 out, whatever inside
            compute_precision=getattr(ct.precision, PRECISIONS[quantize]),
            minimum_deployment_target=ct.target.iOS16,
        )


def export_coreml(run: LoadedRun, path: Path, quantize: str | None = None) -> Path:
    """Write the run's window model to ``path`` (an ``.mlpackage`` folder); ``quantize="float16"``: computed
    in float16 (weights and activations), as Core ML's GPU and Neural Engine run it."""
    if quantize not in PRECISIONS:
        raise RunError(f"--format coreml takes --quantize float16 or nothing (float32), not {quantize}")
    model, plan = window_model(run)
    converted = convert(model, plan, quantize)
    with quiet_coremltools():
        converted.short_description = f"eastmir {run.config.system_label}: one window → probabilities"
        converted.user_defined_metadata["eastmir"] = json.dumps({**metadata(run, quantize), "window": plan.card()})
        converted.save(str(path))
    return path


def read_program(path: Path) -> tuple[Any, dict[str, Any]]:
    """The ML program of the package at ``path`` (read back from its files) and its interface: ``{name:
    (shape, type)}`` of the inputs and the output."""
    ct = coremltools_module()
    from coremltools.converters.mil.frontend.milproto.load import load

    with quiet_coremltools():
        package = ct.models.MLModel(str(path), skip_model_load=True)
        spec = package.get_spec()
        program = load(spec, spec.specificationVersion, package.weights_dir)
    interface = {}
    for feature in [*spec.description.input, *spec.description.output]:
        array = feature.type.multiArrayType
        interface[feature.name] = (
            tuple(array.shape),
            ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType),
        )
    return program, interface


class CoreMLRunner(WindowedRunner):
    """A Core ML window model run by :func:`~eastmir.inference.mil_run.run_program`, driven as an app drives
    it: ``runner(waveform (1, samples)) -> probabilities (1, classes)``. Checks the package's interface first."""

    def __init__(self, path: Path, plan: WindowPlan, classes: int) -> None:
        self.program, interface = read_program(path)
        expected = {
            "segment": ((1, plan.segment_samples), "FLOAT32"),
            "valid": ((1,), "FLOAT32"),
            "probabilities": ((1, classes), "FLOAT32"),
        }
        if interface != expected:
            raise RunError(f"{path}: inputs and output {interface}, expected {expected}; please report this")
        super().__init__(path, self.window, plan)

    def window(self, segment: np.ndarray, valid: np.ndarray) -> np.ndarray:
        from eastmir.inference.mil_run import UncheckableOperation, run_program

        try:
            return run_program(self.program, {"segment": segment, "valid": valid})["probabilities"]
        except UncheckableOperation as err:
            raise RunError(
                f"{self.path}: its ML program holds an operation ({err}) eastmir cannot run outside Apple's "
                "systems, so the export cannot be checked here; please report this"
            ) from None
