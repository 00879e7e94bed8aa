"""Command-line options and single values checked as the run config checks its keys: :func:`cli_type` makes an
argparse ``type=`` from one of the bounded types of :mod:`eastmir.numbers`, so ``--batch-size 0`` and
``data.batch_size: 0`` are refused by the same rule with the same words."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from eastmir.config.messages import format_errors
from eastmir.errors import ConfigError


def check_value(annotation: Any, value: Any, where: str) -> Any:
    """``value`` validated as ``annotation`` (one of the types above); a :class:`~eastmir.errors.ConfigError`
    naming ``where`` otherwise."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as err:
        raise ConfigError("; ".join(format_errors(err, where))) from None


def cli_type(annotation: Any, what: str = "") -> Callable[[str], Any]:
    """An argparse ``type=`` that validates a command-line value as ``annotation`` (the config's type), with
    the same message a config key gets: ``must be at least 1, got 0``."""
    adapter = TypeAdapter(annotation)

    def parse(text: str) -> Any:
        value: Any = text.strip()
        try:  # argparse hands strings: read a number as the config's YAML would (1e3, nan, 0x10 refused)
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
            value = int(number) if number.is_integer() else number
        try:
            return adapter.validate_python(value)
        except ValidationError as err:
            raise argparse.ArgumentTypeError("; ".join(format_errors(err))) from None

    parse.__name__ = what or getattr(annotation, "__name__", "value")
    parse.bounded = True  # type: ignore[attr-defined]  (tests find every bounded option by it)
    return parse


__all__ = ["check_value", "cli_type"]
