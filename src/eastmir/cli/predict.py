"""``eastmir predict``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
import sys

from eastmir.cli.parsers import Parents
from eastmir.config.arguments import cli_type
from eastmir.errors import ConfigError
from eastmir.numbers import BatchSize, BlockSamples, HopSeconds, Top, Workers
from eastmir.outputs import Outputs


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``predict`` command's arguments."""
    pred = sub.add_parser(
        "predict",
        parents=[parents.common, parents.overwrite],
        help="class probabilities of audio files with a trained run",
    )
    pred.add_argument("run", help="a run directory or checkpoint")
    pred.add_argument("audio", nargs="+", help="files, folders (searched recursively) or globs")
    pred.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    pred.add_argument("--out", help="write here instead of the screen")
    pred.add_argument(
        "--hop", type=cli_type(HopSeconds), help="seconds between windows (default: half the training clip)"
    )
    pred.add_argument("--aggregate", choices=("mean", "max"), default="mean", help="over a file's windows")
    pred.add_argument("--curve", action="store_true", help="also the per-window probabilities (jsonl only)")
    pred.add_argument("--batch-size", type=cli_type(BatchSize), default=32, help="windows per batch")
    pred.add_argument("--top", type=cli_type(Top), default=3, help="classes shown per file in the table")
    pred.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N, or auto (a CUDA device when torch sees one); float32 results agree to "
        "about 1e-5 between devices",
    )
    pred.add_argument(
        "--workers",
        type=cli_type(Workers),
        help="processes decoding files while the student runs (default: 0 on 2 cores or fewer, else half the cores "
        "up to 8)",
    )
    pred.add_argument(
        "--stream",
        type=cli_type(BlockSamples),
        metavar="SAMPLES",
        help="feed each file to the student in blocks of SAMPLES samples (at the run's rate), as a plugin gets "
        "its audio, and print each window's scores as it completes (stderr); the results equal predict's",
    )
    pred.add_argument(
        "--precision",
        choices=("float32", "bf16", "int8", "auto"),
        default="float32",
        help="float32 (default: the same probabilities on every machine); bf16: bfloat16 autocast (faster where "
        "the CPU has AMX or AVX512-BF16; probabilities within about 1e-2); auto: bf16 where the CPU has it; int8: "
        "static int8 calibrated on the run's training clips (fastest; they must be on this machine)",
    )


def run(args: argparse.Namespace) -> None:
    from eastmir.errors import RunError
    from eastmir.inference.devices import choose_device
    from eastmir.inference.files import Failure, default_workers, expand_inputs
    from eastmir.inference.predict import choose_precision, load_student
    from eastmir.reporting.predictions import write_predictions

    if args.curve and args.format != "jsonl":
        raise ConfigError("--curve adds each window's probabilities to JSON Lines: use it with --format jsonl")
    files, missing = expand_inputs(args.audio)
    if not files:
        reasons = "; ".join(f.reason for f in missing)
        raise RunError(f"nothing to predict: {reasons}")
    outputs = Outputs(args.overwrite).with_inputs([*files, args.run])
    out = outputs.check(args.out) if args.out else None  # before any long work
    device = choose_device(args.device)  # before the run loads
    precision, why = choose_precision(args.precision, device)
    student = load_student(args.run, precision=precision, device=device)
    print(f"eastmir: {why}", file=sys.stderr)  # once the run has loaded (a refused run is one line)
    if student.threshold_note:
        print(f"eastmir: warning: {student.threshold_note}", file=sys.stderr)
    workers = args.workers if args.workers is not None else default_workers()
    if args.stream:
        found = streamed_files(student, files, args.stream, args.hop, args.aggregate)
    else:
        found = student.predict_files(files, args.hop, args.aggregate, args.batch_size, not args.no_progress, workers)
    results = [*missing, *found]
    failures = [r for r in results if isinstance(r, Failure)]
    for failure in failures:
        print(f"eastmir: skipped {failure.source}: {failure.reason}", file=sys.stderr)
    if failures and len(failures) == len(results):
        raise RunError(f"none of the {len(results)} input(s) could be read")
    predictions = [r for r in results if not isinstance(r, Failure)]
    write_predictions(predictions, args.format, out, args.top, args.curve, outputs)


def streamed_files(student, files, block: int, hop: float | None, aggregate: str):
    """``predict --stream``: each file decoded as ``predict`` decodes it
    (:class:`~eastmir.inference.files.DecodedFiles`, its quality warnings shown), then fed in blocks of ``block``
    samples; every window's top classes printed to stderr as it completes. Yields predictions and failures."""
    import warnings

    from eastmir.audio import AudioDecodeError, AudioQualityWarning
    from eastmir.inference.files import DecodedFiles, Failure

    frontend = student.frontend_config if student.frontend is not None else None
    decoded = DecodedFiles(files, student.sample_rate, frontend)
    for i in range(len(decoded)):
        path, audio, problem, notes = decoded[i]
        for note in notes:
            warnings.warn(note, AudioQualityWarning, stacklevel=2)
        if problem is not None:
            yield Failure(str(path), problem)
            continue
        stream = student.stream(hop, aggregate)
        try:
            for at in range(0, len(audio), block):
                for window in stream.feed(audio[at : at + block]):
                    top = ", ".join(f"{student.classes[k]} {window.probabilities[k]:.3f}" for k in _top(window))
                    print(f"{path} @ {window.start:.2f} s: {top}", file=sys.stderr)
            yield stream.finish(str(path))
        except AudioDecodeError as err:  # too short for the model or the front end's padding
            yield Failure(str(path), str(err))


def _top(window, k: int = 3) -> list[int]:
    return list(reversed(window.probabilities.argsort()[-k:]))
