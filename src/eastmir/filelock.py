"""One process at a time: an advisory lock on a file, naming its holder.

``flock`` on an open file: the system releases it when the holder's process
ends, ``kill -9`` included, so a dead holder's lock is simply taken over. The
holder writes ``process <pid> on <host>`` into the file, which a second
process reads to say who holds it. On a system without ``flock`` (Windows)
nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class Held(Exception):
    """The lock is held by another process: ``holder`` says which."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def hold(lock_file: Path, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``lock_file`` (created if missing) for the calling process. When another process holds it: raise
    :class:`Held`, or, given ``waiting``, call ``waiting(holder)`` and wait until the holder lets go (or dies)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if waiting is None:
                raise Held(holder) from None
            waiting(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def first_process() -> bool:
    """Whether this is the process that owns shared folders in a multi-process job (Lightning relaunches the
    command for every other rank with ``LOCAL_RANK`` / ``NODE_RANK`` set)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


__all__ = ["Held", "first_process", "hold"]
