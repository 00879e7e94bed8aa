"""The ``eastmir`` command. Thin: parses arguments and calls library functions.

A user error (bad config, missing file, unknown name, unusable clip, …) is
printed as one line, ``eastmir: error: …``, with exit status 2; ``--debug``
shows its traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from eastmir.audio import AudioDecodeError, AudioQualityWarning
from eastmir.config.arguments import cli_type
from eastmir.errors import ConfigError, EastmirError, system_error_line
from eastmir.numbers import BatchSize, Count, Fraction, HopSeconds, Seed, Threads, Top, Workers
from eastmir.outputs import Outputs

USER_ERRORS = (EastmirError, AudioDecodeError)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line form as ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"eastmir: error: {message} (see `{self.prog} --help`)\n")


def _workdir(value: str | None) -> Path:
    chosen = value or os.environ.get("EASTMIR_WORKDIR") or "eastmir-work"
    return Path(chosen).absolute()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="eastmir", description="Embeddings As Teachers for music classification")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    workdir = Parser(add_help=False)
    workdir.add_argument(
        "--workdir", help="where data, the store and runs go (default $EASTMIR_WORKDIR or ./eastmir-work)"
    )
    config = Parser(add_help=False)
    config.add_argument(
        "--config",
        required=True,
        nargs="+",
        action="extend",
        metavar="CONFIG",
        help="YAML files or shipped configs (synth/east_final, openmic/east_final-passt), merged in order; "
        "--config may be given several times",
    )
    sets = Parser(add_help=False)
    sets.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. trainer.max_epochs=5 data.root=DIR; --set may be given several times, "
        "applied in order (a key set twice: the last wins)",
    )
    overwrite = Parser(add_help=False)
    overwrite.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist and that eastmir did not write"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset preparation").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", parents=[common], help="write a dataset's manifest (synth: render it)")
    prep.add_argument("name", help="the dataset: synth, folder, openmic, magnatagatune, esc50, fma_small")
    prep.add_argument("--root", required=True, help="dataset folder (manifest.json is written there)")
    prep.add_argument(
        "--download", action="store_true", help="fetch, verify and extract the official archives into --root first"
    )
    prep.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="dataset options, e.g. n_clips=200 clip_seconds=3",
    )

    ext = sub.add_parser("extract", parents=[common, workdir], help="store a teacher's embeddings for a dataset")
    ext.add_argument(
        "--teacher", required=True, help="aisfx, musicnn, precomputed, … (`eastmir teachers`); a+b: an ensemble"
    )
    ext.add_argument("--dataset", required=True, help="a prepared dataset folder (holding manifest.json)")
    ext.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="teacher options, e.g. path=DIR dim=128 for precomputed",
    )
    ext.add_argument("--cache-dir", help="the store (default: <workdir>/cache)")
    ext.add_argument("--weights-dir", help="folder with the teacher's weight file or wheel (offline use)")
    ext.add_argument("--batch-size", type=cli_type(BatchSize), default=8, help="clips per batch")
    ext.add_argument(
        "--workers", type=cli_type(Workers), default=0, help="loader processes decoding audio while the teacher runs"
    )
    ext.add_argument("--devices", default="1", help="devices (e.g. 2, or auto); with several, one rank per device")
    ext.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto, …")
    ext.add_argument("--strategy", default="auto", help="e.g. ddp on several GPUs or nodes")
    ext.add_argument("--num-nodes", type=cli_type(Count), default=1)
    ext.add_argument("--on-error", choices=("raise", "skip"), default="raise")

    feat = sub.add_parser(
        "features", parents=[common, workdir, config, sets], help="store the inputs a run's student reads"
    )
    feat.add_argument("--verify", action="store_true", help="re-read every stored entry; rebuild corrupted ones")

    fit = sub.add_parser("fit", parents=[common, workdir, config, sets], help="train and test one run")
    fit.add_argument("--overwrite", action="store_true", help="train again from the start")

    pack = sub.add_parser(
        "pack",
        parents=[common, workdir, config, sets, overwrite],
        help="write a run's clips as shards to stream (data.stream)",
    )
    pack.add_argument("--out", required=True, help="folder to write the shards and index.json into")
    pack.add_argument("--shard-size", type=cli_type(Count), default=1000, help="clips per shard")

    pred = sub.add_parser(
        "predict", parents=[common, overwrite], help="class probabilities of audio files with a trained run"
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
        "--precision",
        choices=("float32", "bf16", "int8", "auto"),
        default="float32",
        help="float32 (default: the same probabilities on every machine); bf16: bfloat16 autocast (faster where "
        "the CPU has AMX or AVX512-BF16; probabilities within about 1e-2); auto: bf16 where the CPU has it; int8: "
        "static int8 calibrated on the run's training clips (fastest; they must be on this machine)",
    )

    exp = sub.add_parser("export", parents=[common, overwrite], help="one ONNX or TorchScript file, front end inside")
    exp.add_argument("run", help="a run directory or checkpoint")
    exp.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    exp.add_argument(
        "--quantize", choices=("int8",), help="static int8 (ONNX, calibrated on training clips; test mAP change shown)"
    )
    exp.add_argument("--out", help="file to write (default RUN/export/model.onnx or .pt)")

    cx = sub.add_parser(
        "complexity", parents=[common, overwrite], help="parameters and speed of every student and teacher"
    )
    cx.add_argument("--threads", type=cli_type(Threads), default=1, help="torch / ONNX Runtime threads (pinned)")
    cx.add_argument("--students", nargs="+", help="only these students")
    cx.add_argument("--csv", help="also write a CSV here")
    cx.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto: cuda adds GPU columns")

    rep = sub.add_parser(
        "report", parents=[common, overwrite], help="Markdown/CSV table of runs (unfinished ones marked)"
    )
    rep.add_argument("runs", nargs="+", help="run directories (or folders holding them, e.g. WORKDIR/runs)")
    rep.add_argument("--csv", help="also write the per-run CSV here")
    rep.add_argument("--out", help="write the full report here: Markdown, CSV, LaTeX, figures, one HTML page")
    rep.add_argument("--title", default="eastmir report")

    sw = sub.add_parser("sweep", parents=[common, workdir, sets], help="a grid of runs, chosen on validation")
    sw.add_argument("--config", required=True, help="the config every run starts from")
    sw.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        required=True,
        metavar="KEY=V1,V2",
        help="e.g. distillation.lambda=0.3,0.6",
    )
    sw.add_argument("--engine", choices=("sequential", "ray"), default="sequential")
    sw.add_argument("--name", help="base run name (default: the config's name)")

    ex = sub.add_parser("experiment", parents=[common], help="the papers' studies: limited-data, generalisation")
    studies = ex.add_subparsers(dest="study", required=True, metavar="STUDY")
    ld = studies.add_parser(
        "limited-data", parents=[common, workdir, sets, overwrite], help="systems × teachers × data fraction"
    )
    ld.add_argument("--systems", nargs="+", required=True, help="config names, e.g. synth/baseline synth/east_final")
    ld.add_argument("--teachers", nargs="+", default=[], help="teachers of the systems that have one (default: theirs)")
    ld.add_argument("--fractions", nargs="+", type=cli_type(Fraction), default=[0.25, 0.5, 0.75, 1.0])
    ld.add_argument("--seeds", nargs="+", type=cli_type(Seed), default=[0, 1, 2])
    ld.add_argument("--report", help="also write the report here (default: WORKDIR/reports/limited-data)")
    gen = studies.add_parser("generalisation", parents=[common], help="score a trained run on another dataset")
    gen.add_argument("--run", required=True, help="a run trained on MagnaTagATune (or any run with the mapped tags)")
    gen.add_argument("--dataset", required=True, help="the prepared target dataset (e.g. OpenMIC's root)")
    gen.add_argument("--split", default="test")

    rp = sub.add_parser(
        "reproduce", parents=[common, workdir, sets], help="a recipe's whole Table 1 grid, then its report"
    )
    rp.add_argument("recipe", help="openmic, magnatagatune, … (a folder of configs with a runs.yaml)")

    demo = sub.add_parser(
        "demo", parents=[common, workdir, sets], help="render synth, extract a teacher, train, print the table"
    )
    demo.add_argument(
        "--systems", nargs="+", help="synth systems to run (default: baseline teacher_lr east_final_unbiased)"
    )
    demo.add_argument(
        "--seeds", nargs="+", type=cli_type(Seed), help="one run of every system per seed (default: 0 1 2)"
    )
    demo.add_argument("--fraction", type=cli_type(Fraction), help="share of the training split (default: 0.5)")
    demo.add_argument(
        "--teacher", help="the teacher of every system that has one (default: DEFAULT_TEACHER); a+b: both"
    )
    demo.add_argument(
        "--data",
        dest="data_options",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="synth dataset options, e.g. n_clips=200 clip_seconds=2",
    )

    zoo = sub.add_parser(
        "zoo", parents=[common, workdir], help="the authors' trained students: list them, or get one as a run"
    )
    zoo.add_argument("action", nargs="?", choices=("list", "get"), default="list")
    zoo.add_argument("name", nargs="?", help="with get: the student, e.g. openmic/east_final-passt")
    zoo.add_argument("--weights-dir", help="also look here for the checkpoint (default $EASTMIR_WEIGHTS)")
    zoo.add_argument("--file", help="with get: a copy of the checkpoint you already have (checked, then used)")
    zoo.add_argument("--annotations", help="with get, MagnaTagATune: your annotations_final.csv (tag order)")

    sub.add_parser("configs", parents=[common], help="list the shipped configs")
    teachers = sub.add_parser("teachers", parents=[common], help="every teacher: dimension, rate, weights, licence")
    teachers.add_argument("--weights-dir", help="also look here for weight files (as --weights-dir of extract)")
    return parser


def _data_prepare(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import parse_overrides

    manifest = pipeline.prepare(
        args.name, args.root, parse_overrides(args.overrides), progress=not args.no_progress, download=args.download
    )
    counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
    print(f"{manifest.root / 'manifest.json'}: {len(manifest.clips)} clips {counts}, {len(manifest.classes)} classes")


def _extract(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import parse_overrides, teacher_section

    section = teacher_section(args.teacher, parse_overrides(args.overrides))
    manifest = pipeline.load_dataset(args.dataset)
    store = pipeline.store_at(Path(args.cache_dir).absolute() if args.cache_dir else _workdir(args.workdir) / "cache")
    teacher = pipeline.build_teacher(section, weights_dir=args.weights_dir)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    collection, report = pipeline.extract(
        teacher,
        manifest,
        store,
        batch_size=args.batch_size,
        on_error=args.on_error,
        progress=not args.no_progress,
        workers=args.workers,
        devices=devices,
        strategy=args.strategy,
        accelerator=args.accelerator,
        num_nodes=args.num_nodes,
    )
    period = f"frame period {teacher.frame_seconds:.3f} s" if teacher.frame_seconds else "one vector per clip"
    print(f"{teacher.label} (dim {teacher.dim}, {period}): {report.summary(collection)}")


def _features(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=_workdir(args.workdir))
    manifest = pipeline.open_dataset(config)
    store = pipeline.open_store(config)
    collection, report = pipeline.features(config, manifest, store, not args.no_progress, verify=args.verify)
    if collection is None:
        print("nothing to store: this student reads the teacher embeddings (run `eastmir extract`)")
        return
    print(f"{collection.producer.kind}: {report.summary(collection)}")


def _fit(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=_workdir(args.workdir))
    run_dir = pipeline.fit(config, progress=not args.no_progress, overwrite=args.overwrite)
    if all(os.environ.get(rank, "0") == "0" for rank in ("LOCAL_RANK", "NODE_RANK")):  # once, not per DDP process
        from eastmir.rundir import RunDirectory

        run = RunDirectory(run_dir)
        if run.finished:
            metrics = run.read_metrics()
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items())
            print(f"{metrics['system']} ({metrics['name']}), test split: {shown}")
            if metrics.get("data_wait") is not None:
                print(
                    f"data wait: the accelerator waited for batches {metrics['data_wait']:.1%} of the training "
                    "steps' time (more data.num_workers if this is high)"
                )
        print(f"run directory: {run_dir}")


def _pack(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=_workdir(args.workdir))
    out = Outputs(args.overwrite).with_inputs([config.workdir, config.data.root]).check_folder(args.out)
    index = pipeline.pack(config, out, args.shard_size, progress=not args.no_progress)
    print(f"shards and {index.name} in {index.parent}; copy the folder to a bucket and set data.stream to its URL")


def _predict(args: argparse.Namespace) -> None:
    from eastmir.errors import RunError
    from eastmir.inference.predict import (
        Failure,
        choose_device,
        choose_precision,
        default_workers,
        expand_inputs,
        load_student,
    )
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
    found = student.predict_files(files, args.hop, args.aggregate, args.batch_size, not args.no_progress, workers)
    results = [*missing, *found]
    failures = [r for r in results if isinstance(r, Failure)]
    for failure in failures:
        print(f"eastmir: skipped {failure.source}: {failure.reason}", file=sys.stderr)
    if failures and len(failures) == len(results):
        raise RunError(f"none of the {len(results)} input(s) could be read")
    predictions = [r for r in results if not isinstance(r, Failure)]
    write_predictions(predictions, args.format, out, args.top, args.curve, outputs)


def _export(args: argparse.Namespace) -> None:
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


def _complexity(args: argparse.Namespace) -> None:
    from eastmir.inference.complexity import check_students, markdown, measure, write_csv
    from eastmir.inference.predict import choose_device

    check_students(args.students)
    choose_device(args.device)  # a device this machine lacks is one line before the timing run
    outputs = Outputs(args.overwrite)
    csv_path = outputs.check(args.csv, "--csv") if args.csv else None  # before the timing run
    rows = measure(args.threads, args.students, device=args.device)
    print(markdown(rows, args.threads))
    if csv_path:
        write_csv(rows, csv_path, outputs)


def _run_dirs(arguments: list[str]) -> list[Path]:
    """Run directories as given, or the run directories inside a folder (e.g. ``WORKDIR/runs``)."""
    from eastmir.errors import RunError
    from eastmir.paths import path_kind
    from eastmir.rundir import CONFIG_FILE, RunDirectory

    for given in arguments:
        kind = path_kind(given)
        if kind not in (None, "a folder"):
            raise RunError(f"{given}: {'no such run directory or folder' if kind == 'missing' else kind}")
    runs = [run.path for run in RunDirectory.found_in(arguments)]
    if not any((run / CONFIG_FILE).is_file() for run in runs):
        raise RunError(
            f"no run directory in {', '.join(arguments)} (a run directory holds config.yaml; `eastmir fit` writes "
            "them under WORKDIR/runs)"
        )
    return runs


def _report(args: argparse.Namespace) -> None:
    from eastmir.reporting.tables import markdown_table, read_runs, write_csv

    runs = _run_dirs(args.runs)
    outputs = Outputs(args.overwrite).with_inputs(runs)
    csv_path = outputs.check(args.csv, "--csv") if args.csv else None
    out = outputs.check_folder(args.out) if args.out else None
    rows = read_runs(runs)
    print(markdown_table(rows))
    if csv_path:
        write_csv(rows, csv_path, outputs)
    if out:
        from eastmir.reporting.report import write_report

        written = write_report(runs, out, args.title, outputs)
        print(f"\nreport written to {written['html']} (and report.md, report.csv, report.tex, figures/)")


def _sweep(args: argparse.Namespace) -> None:
    from eastmir.experiments.sweep import parse_grid, summary_table, sweep

    best, settings, out = sweep(
        args.config,
        parse_grid(args.grid),
        _workdir(args.workdir),
        args.overrides,
        progress=not args.no_progress,
        engine=args.engine,
        name=args.name,
    )
    print("\n" + summary_table(best, settings))
    chosen = ", ".join(f"{k}={v}" for k, v in best.values.items()) or "the one setting"
    print(f"\nchosen on validation: {chosen}; written to {out / 'sweep.md'} and sweep.json")


def _experiment(args: argparse.Namespace) -> None:
    if args.study == "generalisation":
        from eastmir.experiments.studies import generalisation

        blob = generalisation(args.run, args.dataset, split=args.split, progress=not args.no_progress)
        per_class = ", ".join(f"{k} {'—' if v is None else f'{v:.3f}'}" for k, v in blob["per_class_ap"].items())
        print(
            f"{blob['dataset']} {blob['split']} ({blob['clips']} clips), mapped classes: mAP {blob['test']['mAP']:.3f}"
        )
        print(f"per class: {per_class}")
        return
    from eastmir.experiments.studies import limited_data
    from eastmir.reporting.report import write_report

    workdir = _workdir(args.workdir)
    runs = limited_data(
        args.systems,
        args.teachers,
        workdir,
        args.fractions,
        args.seeds,
        args.overrides,
        progress=not args.no_progress,
    )
    written = write_report(runs, args.report or workdir / "reports" / "limited-data", "Limited training data")
    print(f"\n{written['markdown'].read_text()}\nreport: {written['html']}")


def _reproduce(args: argparse.Namespace) -> None:
    from eastmir.experiments.studies import reproduce
    from eastmir.reporting.report import write_report

    workdir = _workdir(args.workdir)
    runs = reproduce(args.recipe, workdir, args.overrides, progress=not args.no_progress)
    written = write_report(runs, workdir / "reports" / args.recipe, f"{args.recipe}: Table 1")
    print(f"\n{written['markdown'].read_text()}\nreport: {written['html']}")


def _demo(args: argparse.Namespace) -> None:
    from eastmir.config import parse_overrides
    from eastmir.demo import DEFAULT_SYSTEMS, DEFAULT_TEACHER, DEMO_FRACTION, DEMO_SEEDS, run_demo

    run_demo(
        _workdir(args.workdir),
        args.systems or DEFAULT_SYSTEMS,
        args.overrides,
        parse_overrides(args.data_options),
        progress=not args.no_progress,
        teacher=args.teacher or DEFAULT_TEACHER,
        seeds=args.seeds or DEMO_SEEDS,
        fraction=DEMO_FRACTION if args.fraction is None else args.fraction,
    )


def _teachers(args: argparse.Namespace) -> None:
    from eastmir import pipeline

    rows = pipeline.teacher_catalogue(args.weights_dir)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


def _zoo(args: argparse.Namespace) -> None:
    from eastmir.inference import zoo

    if args.action == "list":
        print(zoo.catalogue_markdown(zoo.catalogue(args.weights_dir)))
        return
    if not args.name:
        raise ConfigError("eastmir zoo get NAME: name the student (`eastmir zoo` lists them)")
    run = zoo.get(
        args.name, _workdir(args.workdir), args.weights_dir, args.file, args.annotations, not args.no_progress
    )
    print(f"{args.name}: run directory {run}")
    print(f"predict with: eastmir predict {run} YOUR_AUDIO …   export with: eastmir export {run}")


def _configs(args: argparse.Namespace) -> None:
    from eastmir.config import shipped_names

    for name in shipped_names():
        print(name)


COMMANDS = {
    "extract": _extract,
    "pack": _pack,
    "features": _features,
    "fit": _fit,
    "report": _report,
    "sweep": _sweep,
    "experiment": _experiment,
    "reproduce": _reproduce,
    "predict": _predict,
    "export": _export,
    "complexity": _complexity,
    "demo": _demo,
    "configs": _configs,
    "teachers": _teachers,
    "zoo": _zoo,
    "data": _data_prepare,
}


def one_line(err: BaseException) -> str:
    """The message of a user error on one line (the original message of an error raised in a DataLoader worker)."""
    text = str(err)
    if "Original Traceback" in text:  # torch re-raises worker errors with the traceback in the message
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Our own warnings (suspect audio) as one ``eastmir: warning: …`` line; others as Python shows them."""
    if issubclass(category, AudioQualityWarning):
        print(f"eastmir: warning: {message}", file=file or sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
    except BrokenPipeError:
        # the reader went away (`eastmir configs | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"eastmir: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eastmir: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as err:
        line = system_error_line(err)
        if args.debug or line is None:
            raise
        print(f"eastmir: error: {line}", file=sys.stderr)
        return 2
    except SystemExit as stop:
        if type(stop).__name__ != "SIGTERMException":  # Lightning's, after a SIGTERM: stopped at a clean point
            raise
        print("eastmir: stopped by SIGTERM; rerun the same command to resume", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
