"""``eastmir data``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents, add_settings


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``data`` command's arguments."""
    data = sub.add_parser("data", help="dataset preparation").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", parents=[parents.common], help="write a dataset's manifest (synth: render it)")
    prep.add_argument("name", help="the dataset: synth, folder, openmic, magnatagatune, esc50, fma_small")
    prep.add_argument("--root", required=True, help="dataset folder (manifest.json is written there)")
    prep.add_argument(
        "--download", action="store_true", help="fetch, verify and extract the official archives into --root first"
    )
    add_settings(prep, "dataset options, e.g. n_clips=200 clip_seconds=3")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import parse_overrides

    manifest = pipeline.prepare(
        args.name, args.root, parse_overrides(args.overrides), progress=not args.no_progress, download=args.download
    )
    counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
    print(f"{manifest.root / 'manifest.json'}: {len(manifest.clips)} clips {counts}, {len(manifest.classes)} classes")
