"""The ``eastmir`` command. Thin: parses arguments and calls library functions; one module per command, holding
its parser (``add``) and what it runs (``run``), listed in :data:`COMMANDS` in the order ``--help`` shows them.

A user error (bad config, missing file, unknown name, unusable clip, …) is
printed as one line, ``eastmir: error: …``, with exit status 2; ``--debug``
shows its traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from types import ModuleType

from eastmir.audio import AudioDecodeError, AudioQualityWarning
from eastmir.cli import (
    complexity,
    configs,
    data,
    demo,
    experiment,
    export,
    extract,
    features,
    fit,
    pack,
    predict,
    report,
    reproduce,
    sweep,
    teachers,
    zoo,
)
from eastmir.cli.parsers import Parser, parents
from eastmir.errors import EastmirError, system_error_line

USER_ERRORS = (EastmirError, AudioDecodeError)
COMMANDS: dict[str, ModuleType] = {
    "data": data,
    "extract": extract,
    "features": features,
    "fit": fit,
    "pack": pack,
    "predict": predict,
    "export": export,
    "complexity": complexity,
    "report": report,
    "sweep": sweep,
    "experiment": experiment,
    "reproduce": reproduce,
    "demo": demo,
    "zoo": zoo,
    "configs": configs,
    "teachers": teachers,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="eastmir", description="Embeddings As Teachers for music classification")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    shared = parents()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add(sub, shared)
    return parser


def one_line(err: BaseException) -> str:
    """The message of a user error on one line (the original message of an error raised in a DataLoader worker)."""
    text = str(err)
    if "Original Traceback" in text:  # torch re-raises worker errors with the traceback in the message
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Our own warnings (suspect audio) as one ``eastmir: warning: …`` line; others as Python shows them."""
    if issubclass(category, AudioQualityWarning):
        print(f"eastmir: warning: {message}", file=file or sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        COMMANDS[args.command].run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
    except BrokenPipeError:
        # the reader went away (`eastmir configs | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"eastmir: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eastmir: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as err:
        line = system_error_line(err)
        if args.debug or line is None:
            raise
        print(f"eastmir: error: {line}", file=sys.stderr)
        return 2
    except SystemExit as stop:
        if type(stop).__name__ != "SIGTERMException":  # Lightning's, after a SIGTERM: stopped at a clean point
            raise
        print("eastmir: stopped by SIGTERM; rerun the same command to resume", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
