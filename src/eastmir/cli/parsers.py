"""What every command's parser shares: the one-line error form, the parent parsers of the shared options, and
the work directory."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple

from eastmir.config.arguments import cli_type
from eastmir.numbers import Count


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line form as ours."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"eastmir: error: {message} (see `{self.prog} --help`)\n")


class Parents(NamedTuple):
    """Parent parsers: ``--debug``/``--no-progress``, ``--workdir``, ``--config``, ``--set``, ``--overwrite``,
    ``--jobs``."""

    common: argparse.ArgumentParser
    workdir: argparse.ArgumentParser
    config: argparse.ArgumentParser
    sets: argparse.ArgumentParser
    overwrite: argparse.ArgumentParser
    jobs: argparse.ArgumentParser


def add_settings(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE …`` (repeatable, extending in order) on ``parser``, into ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=help
    )


def parents() -> Parents:
    """The parent parsers commands take their shared options from."""
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    workdir = Parser(add_help=False)
    workdir.add_argument(
        "--workdir", help="where data, the store and runs go (default $EASTMIR_WORKDIR or ./eastmir-work)"
    )
    config = Parser(add_help=False)
    config.add_argument(
        "--config",
        required=True,
        nargs="+",
        action="extend",
        metavar="CONFIG",
        help="YAML files or shipped configs (synth/east_final, openmic/east_final-passt), merged in order; "
        "--config may be given several times",
    )
    sets = Parser(add_help=False)
    add_settings(
        sets,
        "override config values, e.g. trainer.max_epochs=5 data.root=DIR; --set may be given several times, "
        "applied in order (a key set twice: the last wins)",
    )
    overwrite = Parser(add_help=False)
    overwrite.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist and that eastmir did not write"
    )
    jobs = Parser(add_help=False)
    jobs.add_argument(
        "--jobs",
        type=cli_type(Count),
        default=1,
        help="runs trained at once, each in its own process, sharing the cores and devices (default 1)",
    )
    return Parents(common, workdir, config, sets, overwrite, jobs)


def workdir_path(value: str | None) -> Path:
    chosen = value or os.environ.get("EASTMIR_WORKDIR") or "eastmir-work"
    return Path(chosen).absolute()
