"""``eastmir experiment``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path
from eastmir.config.arguments import cli_type
from eastmir.numbers import Fraction, Seed


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``experiment`` command's arguments."""
    ex = sub.add_parser(
        "experiment", parents=[parents.common], help="the papers' studies: limited-data, generalisation"
    )
    studies = ex.add_subparsers(dest="study", required=True, metavar="STUDY")
    ld = studies.add_parser(
        "limited-data",
        parents=[parents.common, parents.workdir, parents.sets, parents.overwrite, parents.jobs],
        help="systems × teachers × data fraction",
    )
    ld.add_argument("--systems", nargs="+", required=True, help="config names, e.g. synth/baseline synth/east_final")
    ld.add_argument("--teachers", nargs="+", default=[], help="teachers of the systems that have one (default: theirs)")
    ld.add_argument("--fractions", nargs="+", type=cli_type(Fraction), default=[0.25, 0.5, 0.75, 1.0])
    ld.add_argument("--seeds", nargs="+", type=cli_type(Seed), default=[0, 1, 2])
    ld.add_argument("--report", help="also write the report here (default: WORKDIR/reports/limited-data)")
    gen = studies.add_parser("generalisation", parents=[parents.common], help="score a trained run on another dataset")
    gen.add_argument("--run", required=True, help="a run trained on MagnaTagATune (or any run with the mapped tags)")
    gen.add_argument("--dataset", required=True, help="the prepared target dataset (e.g. OpenMIC's root)")
    gen.add_argument("--split", default="test")


def run(args: argparse.Namespace) -> None:
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

    workdir = workdir_path(args.workdir)
    runs = limited_data(
        args.systems,
        args.teachers,
        workdir,
        args.fractions,
        args.seeds,
        args.overrides,
        progress=not args.no_progress,
        n_jobs=args.jobs,
    )
    if not args.report:  # the work directory's own reports folder, made here (a --report folder must exist)
        (workdir / "reports").mkdir(parents=True, exist_ok=True)
    written = write_report(runs, args.report or workdir / "reports" / "limited-data", "Limited training data")
    print(f"\n{written['markdown'].read_text()}\nreport: {written['html']}")
