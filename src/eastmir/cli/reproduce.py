"""``eastmir reproduce``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``reproduce`` command's arguments."""
    rp = sub.add_parser(
        "reproduce",
        parents=[parents.common, parents.workdir, parents.sets, parents.jobs],
        help="a recipe's whole Table 1 grid, then its report",
    )
    rp.add_argument("recipe", help="openmic, magnatagatune, … (a folder of configs with a runs.yaml)")


def run(args: argparse.Namespace) -> None:
    from eastmir.experiments.studies import reproduce
    from eastmir.reporting.report import write_report

    workdir = workdir_path(args.workdir)
    runs = reproduce(args.recipe, workdir, args.overrides, progress=not args.no_progress, n_jobs=args.jobs)
    (workdir / "reports").mkdir(parents=True, exist_ok=True)  # the work directory's own reports folder
    written = write_report(runs, workdir / "reports" / args.recipe, f"{args.recipe}: Table 1")
    print(f"\n{written['markdown'].read_text()}\nreport: {written['html']}")
