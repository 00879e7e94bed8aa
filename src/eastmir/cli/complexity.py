"""``eastmir complexity``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse

from eastmir.cli.parsers import Parents
from eastmir.config.arguments import cli_type
from eastmir.numbers import Threads
from eastmir.outputs import Outputs


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``complexity`` command's arguments."""
    cx = sub.add_parser(
        "complexity",
        parents=[parents.common, parents.overwrite],
        help="parameters and speed of every student and teacher",
    )
    cx.add_argument("--threads", type=cli_type(Threads), default=1, help="torch / ONNX Runtime threads (pinned)")
    cx.add_argument("--students", nargs="+", help="only these students")
    cx.add_argument("--csv", help="also write a CSV here")
    cx.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto: cuda adds GPU columns")


def run(args: argparse.Namespace) -> None:
    from eastmir.inference.complexity import check_students, markdown, measure, write_csv
    from eastmir.inference.devices import choose_device

    check_students(args.students)
    choose_device(args.device)  # a device this machine lacks is one line before the timing run
    outputs = Outputs(args.overwrite)
    csv_path = outputs.check(args.csv, "--csv") if args.csv else None  # before the timing run
    rows = measure(args.threads, args.students, device=args.device)
    print(markdown(rows, args.threads))
    if csv_path:
        write_csv(rows, csv_path, outputs)
