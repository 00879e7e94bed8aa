"""``eastmir export``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eastmir.cli.parsers import Parents
from eastmir.outputs import Outputs


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``export`` command's arguments."""
    exp = sub.add_parser(
        "export",
        parents=[parents.common, parents.overwrite],
        help="one ONNX, TorchScript or LiteRT file, front end inside",
    )
    exp.add_argument("run", help="a run directory or checkpoint")
    exp.add_argument("--format", choices=("onnx", "torchscript", "litert"), default="onnx")
    exp.add_argument(
        "--quantize", choices=("int8",), help="static int8 (ONNX, calibrated on training clips; test mAP change shown)"
    )
    exp.add_argument("--out", help="file to write (default RUN/export/model.onnx, .pt or .tflite)")


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
    if args.out:
        outputs.check(args.out)  # before the run loads
    path, card, notes = export(
        load_run(args.run), args.format, Path(args.out) if args.out else None, args.quantize, outputs
    )
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB), model card {card}")
    for note in notes:
        print(f"  {note}")
