"""Fetching a file over HTTP(S) safely: resumable transfers and checksums; and :func:`atomic_write`.

Used by dataset downloads (:mod:`eastmir.data.download`) and teacher weights
(:mod:`eastmir.teachers.published`). A transfer goes to a ``.part`` file and
continues an interrupted one with an HTTP ``Range`` request, a few times
automatically and again on the next call.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from eastmir.errors import EastmirError

CHUNK = 1 << 20


class FetchError(EastmirError):
    """A transfer failed or stopped; the message says what is kept and how to go on."""


def part_name(path: Path) -> Path:
    """The temporary name :func:`atomic_write` writes ``path`` under: ``.<name>.<pid>-<thread>.part`` beside it
    (:func:`eastmir.data.store.remove_stale_parts` removes those of a process that died)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")


def atomic_write(path: str | Path, data: str | bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed over it: a reader sees the old file or the
    whole new one, never a part (an interrupted or failed write leaves ``path`` as it was). ``durable``: flush
    it to the disk before the rename (store entries skip that: their checksum finds a torn one)."""
    path = Path(path)
    tmp = part_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None:  # (a full disk says so without a file name)
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of ``path`` with ``algorithm`` (``md5``, ``sha1``, ``sha256``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def transfer(url: str, part: Path, progress: bool = True, attempts: int = 4, timeout: float = 60.0) -> None:
    """Fetch ``url`` into ``part``, continuing an earlier partial transfer with HTTP ``Range``."""
    error: Exception | None = None
    for _ in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "eastmir", **({"Range": f"bytes={have}-"} if have else {})}
        request = Request(url, headers=headers)
        try:
            with urlopen(request, timeout=timeout) as response:
                resumed = have > 0 and response.status == 206
                total = _total(response, have if resumed else 0)
                with (
                    open(part, "ab" if resumed else "wb") as out,
                    tqdm(
                        total=total,
                        initial=have if resumed else 0,
                        unit="B",
                        unit_scale=True,
                        desc=part.name[:-5],
                        disable=not progress,
                    ) as bar,
                ):
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
            if total is None or part.stat().st_size >= total:
                return
            error = ConnectionError(f"the transfer stopped at {part.stat().st_size} of {total} bytes")
        except HTTPError as err:
            if err.code == 416 and have:  # nothing left to fetch: the part is complete
                return
            raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
        except (URLError, HTTPException, ConnectionError, TimeoutError, OSError) as err:
            error = err
    size = part.stat().st_size if part.exists() else 0
    raise FetchError(
        f"{url}: download interrupted ({error}); {size} bytes are kept in {part}: rerun the same command to resume"
    )


def _total(response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None
