"""``eastmir pack``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path
from eastmir.config.arguments import cli_type
from eastmir.numbers import Count
from eastmir.outputs import Outputs


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``pack`` command's arguments."""
    pack = sub.add_parser(
        "pack",
        parents=[parents.common, parents.workdir, parents.config, parents.sets, parents.overwrite],
        help="write a run's clips as shards to stream (data.stream)",
    )
    pack.add_argument("--out", required=True, help="folder to write the shards and index.json into")
    pack.add_argument("--shard-size", type=cli_type(Count), default=1000, help="clips per shard")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=workdir_path(args.workdir))
    out = Outputs(args.overwrite).with_inputs([config.workdir, config.data.root]).check_folder(args.out)
    index = pipeline.pack(config, out, args.shard_size, progress=not args.no_progress)
    print(f"shards and {index.name} in {index.parent}; copy the folder to a bucket and set data.stream to its URL")
