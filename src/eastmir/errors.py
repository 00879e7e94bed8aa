"""The errors a user can cause, and fix.

Every one of them carries a message that names the file, key or clip at
fault and says what to do; the command line prints it as one line,
``eastmir: error: …`` (exit status 2), and only ``--debug`` shows a
traceback. Any other exception is a bug in eastmir and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EastmirError(Exception):
    """Base class of every user-facing error."""


class ConfigError(EastmirError, ValueError):
    """A config is malformed or asks for an impossible combination."""


class UnknownNameError(ConfigError, KeyError):
    """A name (student, teacher, dataset, config, …) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ManifestError(EastmirError, ValueError):
    """A dataset manifest or a dataset's source files are missing or malformed."""


class StoreError(EastmirError):
    """A store entry is missing, corrupted, or could not be built."""


class SourceError(StoreError):
    """A source file (audio, a user's embedding file) cannot be turned into a store entry."""


class WeightsUnavailable(EastmirError, RuntimeError):
    """Pretrained weights could not be found or fetched; the message says how to provide them."""


class TrainingError(EastmirError, RuntimeError):
    """Training cannot go on (a non-finite loss, an unreadable checkpoint, …)."""


class RunError(EastmirError):
    """A run directory is incomplete or cannot be loaded."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
