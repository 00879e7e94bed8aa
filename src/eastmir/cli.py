"""The ``eastmir`` command. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _workdir(value: str | None) -> Path:
    chosen = value or os.environ.get("EASTMIR_WORKDIR") or "eastmir-work"
    return Path(chosen).resolve()


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", help="where data, caches and runs go (default $EASTMIR_WORKDIR or ./eastmir-work)")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. trainer.max_epochs=5",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eastmir", description="Embeddings As Teachers for music classification")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset preparation").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", help="write a dataset's manifest (synth: render it)")
    prep.add_argument("name")
    prep.add_argument("--root", required=True, help="dataset folder")
    prep.add_argument(
        "--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dataset options, e.g. n_clips=200"
    )

    ext = sub.add_parser("extract", help="cache a teacher's embeddings for a dataset")
    ext.add_argument("--teacher", required=True)
    ext.add_argument("--dataset", required=True, help="dataset folder holding manifest.json")
    ext.add_argument("--cache-dir", help="cache root (default: <workdir>/cache)")
    ext.add_argument("--weights-dir", help="folder with the teacher's weight file or wheel (offline use)")
    ext.add_argument("--batch-size", type=int, default=8)
    ext.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    ext.add_argument("--workdir")

    feat = sub.add_parser("features", help="cache the inputs a config's student reads (fit does this implicitly)")
    feat.add_argument("--config", required=True)
    _add_common(feat)

    fit = sub.add_parser("fit", help="train and test one run from a YAML config")
    fit.add_argument("--config", required=True, help="a YAML file, or a shipped config such as synth/east_final")
    fit.add_argument("--overwrite", action="store_true", help="retrain a finished run")
    _add_common(fit)

    rep = sub.add_parser("report", help="Markdown/CSV table of finished runs")
    rep.add_argument("runs", nargs="+", help="run directories")
    rep.add_argument("--csv", help="also write a CSV here")

    demo = sub.add_parser(
        "demo", help="render synth, extract aiSFX, train Baseline/TeacherLR/EAsT_Final, print the table"
    )
    demo.add_argument("--systems", nargs="+", help="systems to run (default: baseline teacher_lr east_final)")
    _add_common(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from eastmir.config import parse_overrides
        from eastmir.registry import DATASETS

        manifest = DATASETS.get(args.name)(Path(args.root), **parse_overrides(args.overrides))
        counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
        print(
            f"{manifest.root / 'manifest.json'}: {len(manifest.clips)} clips {counts}, {len(manifest.classes)} classes"
        )
    elif args.command == "extract":
        from eastmir.data.manifest import load_manifest
        from eastmir.registry import TEACHERS
        from eastmir.teachers.extract import extract_embeddings

        cache = Path(args.cache_dir) if args.cache_dir else _workdir(args.workdir) / "cache"
        teacher = TEACHERS.build(args.teacher, weights_dir=args.weights_dir, cache_dir=str(cache))
        store = extract_embeddings(
            teacher, load_manifest(args.dataset), cache, batch_size=args.batch_size, on_error=args.on_error
        )
        print(f"embeddings in {store.folder} (dim {store.dim}, frame period {store.frame_seconds} s)")
    elif args.command == "features":
        from eastmir.config import load_config
        from eastmir.training.fit import prepare_dataset, student_inputs
        from eastmir.training.system import input_key_for

        config = load_config(args.config, args.overrides, workdir=_workdir(args.workdir))
        manifest = prepare_dataset(config, progress=not args.no_progress)
        key = input_key_for(config)
        folder, _ = student_inputs(config, manifest, key, progress=not args.no_progress)
        print(f"{key} cache: {folder}" if folder else "nothing to cache: this student reads the teacher embeddings")
    elif args.command == "fit":
        from eastmir.config import load_config
        from eastmir.training.fit import fit

        config = load_config(args.config, args.overrides, workdir=_workdir(args.workdir))
        run_dir = fit(config, progress=not args.no_progress, overwrite=args.overwrite)
        print(f"run directory: {run_dir}")
    elif args.command == "report":
        from eastmir.reporting.tables import markdown_table, read_runs, write_csv

        rows = read_runs(args.runs)
        print(markdown_table(rows))
        if args.csv:
            write_csv(rows, args.csv)
    elif args.command == "demo":
        from eastmir.demo import DEFAULT_SYSTEMS, run_demo

        run_demo(_workdir(args.workdir), args.systems or DEFAULT_SYSTEMS, args.overrides, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
