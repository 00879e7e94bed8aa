"""``eastmir export``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eastmir.cli.parsers import Parents
from eastmir.outputs import Outputs
from eastmir.paths import size_on_disk


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``export`` command's arguments."""
    exp = sub.add_parser(
        "export",
        parents=[parents.common, parents.overwrite],
        help="one ONNX, TorchScript, LiteRT file or Core ML package, front end inside",
    )
    exp.add_argument("run", help="a run directory or checkpoint")
    exp.add_argument("--format", choices=("onnx", "torchscript", "litert", "coreml"), default="onnx")
    exp.add_argument(
        "--quantize",
        choices=("int8", "float16"),
        help="int8: static, calibrated on training clips (onnx, torchscript, litert); float16: coreml; the test mAP "
        "change is shown",
    )
    exp.add_argument(
        "--calibrate-on",
        nargs="+",
        metavar="RECORDINGS",
        help="with --quantize int8: calibrate on these audio files, folders or globs (up to 32 clip-long pieces) "
        "instead of the run's training clips (for a zoo student, or a run whose data is elsewhere)",
    )
    exp.add_argument("--out", help="file to write (default RUN/export/model.onnx, .pt, .tflite or .mlpackage)")


def run(args: argparse.Namespace) -> None:
    from eastmir.inference import load_run
    from eastmir.inference.export import export

    run = Path(args.run)
    own = (
        [run]
        if run.is_file()
        else [run / n for n in ("checkpoints", "config.yaml", "metrics.json", "fingerprint.json")]
    )
    outputs = Outputs(args.overwrite).with_inputs(own)
    if args.out:  # before the run loads
        outputs.check_bundle(args.out) if args.format == "coreml" else outputs.check(args.out)
    loaded = load_run(args.run)
    if args.calibrate_on:
        loaded = calibrated_on(loaded, args.calibrate_on, args.quantize)
    path, card, notes = export(loaded, args.format, Path(args.out) if args.out else None, args.quantize, outputs)
    print(f"{path} ({size_on_disk(path) / 1e6:.1f} MB), model card {card}")
    for note in notes:
        print(f"  {note}")


def calibrated_on(run, sources: list[str], quantize: str | None):
    """``run`` with the recordings ``--calibrate-on`` names as its int8 calibration (files, folders, globs)."""
    import dataclasses

    from eastmir.errors import RunError
    from eastmir.inference.files import expand_inputs

    if quantize != "int8":
        raise RunError("--calibrate-on calibrates int8: use it with --quantize int8")
    files, missing = expand_inputs(sources)
    if missing:
        raise RunError(f"--calibrate-on {missing[0].reason}")
    return dataclasses.replace(run, calibration=tuple(files))
