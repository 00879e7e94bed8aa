"""The errors a user can cause, and fix.

Every one of them carries a message that names the file, key or clip at
fault and says what to do; the command line prints it as one line,
``eastmir: error: …`` (exit status 2), and only ``--debug`` shows a
traceback. Any other exception is a bug in eastmir and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


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


# what the system refuses, and what to do about it: the one table every command's OS errors are read through
SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device; free some space (or point --workdir or --out elsewhere) and rerun "
    "the same command",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun the same command",
    errno.EFBIG: "file too large: the file-size limit of this shell (ulimit -f) or of the file system was reached; "
    "raise the limit (ulimit -f unlimited) or write elsewhere, then rerun the same command",
    errno.EROFS: "the file system is read-only; point --workdir or --out at a writable folder",
    errno.EACCES: "permission denied; check the permissions of this path, or use another",
    errno.EPERM: "operation not permitted; check the permissions of this path, or use another",
    errno.ELOOP: "too many levels of symbolic links (a link that points to itself); fix or remove the link",
    errno.ENAMETOOLONG: "file name too long; use a shorter path",
    errno.ENOTDIR: "a part of this path is a file, not a folder; check the path (or $EASTMIR_CACHE, --workdir)",
    errno.EISDIR: "a folder where a file belongs; check the path",
    errno.EEXIST: "already exists; remove it or choose another path",
    errno.EIO: "input/output error from the storage device; check the disk, then rerun the same command",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer loader workers",
}
# where the weights cache lives, said with EACCES / EROFS errors inside it
WEIGHTS_CACHE_HINT = "set EASTMIR_CACHE to a writable folder (it holds the teachers' weights)"


def system_error_line(err: OSError) -> str | None:
    """The one line for an operating-system error (``path: cause; what to do``), or ``None`` for one that is
    not the user's to fix (a bug keeps its traceback)."""
    cause = SYSTEM_ERRORS.get(err.errno or -1)
    if cause is None:
        return None
    where = f"{err.filename}: " if err.filename else ""
    cache = os.environ.get("EASTMIR_CACHE")
    if err.errno in (errno.EACCES, errno.EROFS) and cache and err.filename and str(err.filename).startswith(cache):
        cause = f"{cause.split(';')[0]}; {WEIGHTS_CACHE_HINT}"
    return f"{where}{cause}"


def storage_error(err: BaseException, path: str | Path) -> OSError | None:
    """The OS error behind a library's write failure (torch's zip writer says "file write failed" for a full
    disk and for ``ulimit -f`` alike): EFBIG where a file-size limit is set, ENOSPC where the disk is nearly
    full, else ``None``."""
    text = str(err)
    if not any(mark in text for mark in ("PytorchStreamWriter", "inline_container", "file write failed")):
        return None
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        limited = soft != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        limited = False
    if limited:
        code = errno.EFBIG
    else:
        import shutil

        folder = Path(path).parent
        code = errno.ENOSPC if folder.is_dir() and shutil.disk_usage(folder).free < 64 * 2**20 else errno.EIO
    return OSError(code, os.strerror(code), str(path))
