"""``eastmir configs``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``configs`` command's arguments."""
    sub.add_parser("configs", parents=[parents.common], help="list the shipped configs")


def run(args: argparse.Namespace) -> None:
    from eastmir.config import shipped_names

    for name in shipped_names():
        print(name)
