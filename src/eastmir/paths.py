"""What a path given by a user is, in words: the one place that tells a missing file from a folder, a pipe, a
device, a socket or a link loop, so that no command says "does not exist" of something that does.

:func:`path_kind` names what stands at a path (``None``: a regular file); :func:`regular_file_problem`
is the reason a path cannot be read as a file, or ``None`` when it can.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def path_kind(path: str | Path) -> str | None:
    """``None`` for a regular file (through links); else what stands there: ``"missing"``, ``"a folder"``,
    ``"a pipe (FIFO)"``, ``"a character device"``, ``"a block device"``, ``"a socket"``,
    ``"a symbolic link loop"``, ``"a broken symbolic link"``, or the system's reason (``"permission denied"``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        if err.errno == errno.ENOENT:
            return "a broken symbolic link" if os.path.islink(path) else "missing"
        if err.errno == errno.ENOTDIR:
            return "missing"  # a part of the path is a file
        return (err.strerror or "unreadable").lower()
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None


def size_on_disk(path: str | Path) -> int:
    """Bytes of the file at ``path``, or of every file below it when it is a folder (a Core ML package)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def regular_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file (``"does not exist"``, ``"is not a regular file (a pipe (FIFO))"``,
    ``"is a symbolic link loop"``, …), or ``None`` when it is a regular file."""
    kind = path_kind(path)
    if kind is None:
        return None
    if kind == "missing":
        return "does not exist"
    if kind == "a folder":
        return "is a folder, not a file"
    if kind.startswith("a symbolic") or kind.startswith("a broken"):
        return f"is {kind}"
    if kind.startswith("a "):
        return f"is not a regular file ({kind})"
    return f"cannot be read ({kind})"
