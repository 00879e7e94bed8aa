"""``eastmir sweep``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``sweep`` command's arguments."""
    sw = sub.add_parser(
        "sweep",
        parents=[parents.common, parents.workdir, parents.sets, parents.jobs],
        help="a grid of runs, chosen on validation",
    )
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


def run(args: argparse.Namespace) -> None:
    from eastmir.experiments.sweep import parse_grid, summary_table, sweep

    best, settings, out = sweep(
        args.config,
        parse_grid(args.grid),
        workdir_path(args.workdir),
        args.overrides,
        progress=not args.no_progress,
        engine=args.engine,
        name=args.name,
        n_jobs=args.jobs,
    )
    print("\n" + summary_table(best, settings))
    chosen = ", ".join(f"{k}={v}" for k, v in best.values.items()) or "the one setting"
    print(f"\nchosen on validation: {chosen}; written to {out / 'sweep.md'} and sweep.json")
