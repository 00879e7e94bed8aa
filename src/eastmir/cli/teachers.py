"""``eastmir teachers``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``teachers`` command's arguments."""
    teachers = sub.add_parser(
        "teachers", parents=[parents.common], help="every teacher: dimension, rate, weights, licence"
    )
    teachers.add_argument("--weights-dir", help="also look here for weight files (as --weights-dir of extract)")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline

    rows = pipeline.teacher_catalogue(args.weights_dir)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")
