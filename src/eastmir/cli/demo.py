"""``eastmir demo``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path
from eastmir.config.arguments import cli_type
from eastmir.numbers import Fraction, Seed


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``demo`` command's arguments."""
    demo = sub.add_parser(
        "demo",
        parents=[parents.common, parents.workdir, parents.sets],
        help="render synth, extract a teacher, train, print the table",
    )
    demo.add_argument(
        "--systems", nargs="+", help="synth systems to run (default: baseline teacher_lr east_final_unbiased)"
    )
    demo.add_argument(
        "--seeds", nargs="+", type=cli_type(Seed), help="one run of every system per seed (default: 0 1 2)"
    )
    demo.add_argument("--fraction", type=cli_type(Fraction), help="share of the training split (default: 0.5)")
    demo.add_argument("--teacher", help="the teacher of every system that has one (default: musicnn); a+b: both")
    demo.add_argument(
        "--data",
        dest="data_options",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="synth dataset options, e.g. n_clips=200 clip_seconds=2",
    )


def run(args: argparse.Namespace) -> None:
    from eastmir.config import parse_overrides
    from eastmir.demo import DEFAULT_SYSTEMS, DEFAULT_TEACHER, DEMO_FRACTION, DEMO_SEEDS, run_demo

    run_demo(
        workdir_path(args.workdir),
        args.systems or DEFAULT_SYSTEMS,
        args.overrides,
        parse_overrides(args.data_options),
        progress=not args.no_progress,
        teacher=args.teacher or DEFAULT_TEACHER,
        seeds=args.seeds or DEMO_SEEDS,
        fraction=DEMO_FRACTION if args.fraction is None else args.fraction,
    )
