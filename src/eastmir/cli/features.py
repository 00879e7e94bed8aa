"""``eastmir features``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, workdir_path


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``features`` command's arguments."""
    feat = sub.add_parser(
        "features",
        parents=[parents.common, parents.workdir, parents.config, parents.sets],
        help="store the inputs a run's student reads",
    )
    feat.add_argument("--verify", action="store_true", help="re-read every stored entry; rebuild corrupted ones")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=workdir_path(args.workdir))
    manifest = pipeline.open_dataset(config)
    store = pipeline.open_store(config)
    filled = pipeline.features(config, manifest, store, not args.no_progress, verify=args.verify)
    if filled is None:
        print("nothing to store: this student reads the teacher embeddings (run `eastmir extract`)")
        return
    collection, report = filled
    print(f"{collection.producer.kind}: {report.summary(collection)}")
