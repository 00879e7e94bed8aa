"""``eastmir zoo``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path
from eastmir.errors import ConfigError


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``zoo`` command's arguments."""
    zoo = sub.add_parser(
        "zoo",
        parents=[parents.common, parents.workdir],
        help="the authors' trained students: list them, or get one as a run",
    )
    zoo.add_argument("action", nargs="?", choices=("list", "get"), default="list")
    zoo.add_argument("name", nargs="?", help="with get: the student, e.g. openmic/east_final-passt")
    zoo.add_argument("--weights-dir", help="also look here for the checkpoint (default $EASTMIR_WEIGHTS)")
    zoo.add_argument("--file", help="with get: a copy of the checkpoint you already have (checked, then used)")
    zoo.add_argument("--annotations", help="with get, MagnaTagATune: your annotations_final.csv (tag order)")


def run(args: argparse.Namespace) -> None:
    from eastmir.inference import zoo

    if args.action == "list":
        print(zoo.catalogue_markdown(zoo.catalogue(args.weights_dir)))
        return
    if not args.name:
        raise ConfigError("eastmir zoo get NAME: name the student (`eastmir zoo` lists them)")
    run = zoo.get(
        args.name, workdir_path(args.workdir), args.weights_dir, args.file, args.annotations, not args.no_progress
    )
    print(f"{args.name}: run directory {run}")
    print(f"predict with: eastmir predict {run} YOUR_AUDIO …   export with: eastmir export {run}")
