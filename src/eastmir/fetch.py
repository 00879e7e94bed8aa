"""The one fetcher: a published file over HTTP(S), resumable and checked before use; and :func:`atomic_write`.

Dataset archives (:mod:`eastmir.data.download`) and teacher weights
(:mod:`eastmir.teachers.published`) both go through :func:`fetch`:

- A transfer goes to ``<file>.part`` and continues an interrupted one with an
  HTTP ``Range`` request, a few times automatically and again on the next call.
- The file is checked (:func:`check`) before it takes its name: against the
  checksum its publisher gives (``md5:…``, ``sha1:…``, ``sha256:…``, or
  torch hub's ``sha256-prefix:…``), and against the sha256 a
  :class:`DigestRecord` holds from an earlier copy. Where the publisher gives
  no checksum, the first verified copy's sha256 is recorded (trust on first
  download, said so on screen) and every later copy must match it.

Why not ``pooch``: its HTTP downloader starts an interrupted transfer again
from the first byte (no ``Range``), a file whose hash no longer matches is
downloaded again silently, it keeps no record for files published without a
checksum, and on Python 3.11 its tar extractor has no member filter; each of
those is a promise of ours. What remains is this one small module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from eastmir.errors import EastmirError, storage_error

CHUNK = 1 << 20


class FetchError(EastmirError):
    """A transfer failed or stopped; the message says what is kept and how to go on."""


def part_name(path: Path) -> Path:
    """The temporary name :func:`atomic_write` writes ``path`` under: ``.<name>.<pid>-<thread>.part`` beside it
    (:func:`remove_stale_parts` removes those of a process that died)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")


@contextmanager
def atomic_writer(path: str | Path, durable: bool = True, text: bool = False) -> Iterator[IO]:
    """A file handle to write ``path`` through: it goes to :func:`part_name` and is renamed over ``path`` when
    the block ends without an error, so a reader sees the old file or the whole new one, never a part (an
    interrupted or failed write leaves ``path`` as it was, and the crash clean-up knows the part's name).
    ``durable``: flush it to the disk before the rename (store entries skip that: their checksum finds a torn
    one). ``text``: a text handle (for csv writers), else binary."""
    path = Path(path)
    tmp = part_name(path)
    try:
        with open(tmp, "w" if text else "wb", **({"newline": ""} if text else {})) as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename is None:  # (a full disk says so without a file name)
            raise OSError(err.errno, err.strerror, str(path)) from err
        behind = storage_error(err, path) if isinstance(err, RuntimeError) else None
        if behind is not None:  # torch's writer: "file write failed", for a full disk and ulimit -f alike
            raise behind from err
        raise


def atomic_write(path: str | Path, data: str | bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` whole or not at all (:func:`atomic_writer`)."""
    with atomic_writer(path, durable) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of ``path`` with ``algorithm`` (``md5``, ``sha1``, ``sha256``), remembered per path, size
    and modification time (a weight file is hashed once per process)."""
    info = Path(path).stat()
    return _digest(str(Path(path).absolute()), info.st_size, info.st_mtime_ns, algorithm)


@lru_cache(maxsize=128)
def _digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file (:func:`file_digest`)."""
    return file_digest(path, "sha256")


@dataclass(frozen=True)
class Published:
    """A file as its publisher serves it: ``checksum`` is what the publisher gives (``"md5:…"``, ``"sha1:…"``,
    ``"sha256:…"``, ``"sha256-prefix:…"``), or ``None`` when it gives none."""

    url: str
    filename: str
    checksum: str | None
    licence: str


class ChecksumMismatch(FetchError):
    """A file is not the published one (or not the copy recorded before)."""


class DigestRecord:
    """A JSON file of ``{filename: {"sha256": …, …}}``: every verified file's sha256 and what its caller adds
    (e.g. ``extracted``). Written atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        blob = json.loads(self.path.read_text())
        return {k: v if isinstance(v, dict) else {"sha256": v} for k, v in blob.items()}  # old records: name → sha

    def get(self, filename: str) -> dict[str, Any]:
        return self.read().get(filename, {})

    def update(self, filename: str, **fields: Any) -> None:
        record = self.read()
        record[filename] = {**record.get(filename, {}), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(record, indent=1, sort_keys=True))


def check(path: Path, published: Published, record: DigestRecord, label: str | None = None) -> str:
    """``path``'s sha256, after checking it against the published checksum and the recorded sha256; recorded.

    Raises :class:`ChecksumMismatch` naming the file, the actual and the expected sum and where the file comes
    from (``label``: how the message names the file, default its path); the caller says what to do and whether
    to remove it."""
    label = label or str(path)
    sha256 = sha256_of(path)
    if published.checksum:
        kind, expected = published.checksum.split(":", 1)
        actual = sha256 if kind in ("sha256", "sha256-prefix") else file_digest(path, kind)
        if not (actual.startswith(expected) if kind == "sha256-prefix" else actual == expected):
            raise ChecksumMismatch(
                f"{label}: {kind} {actual} does not match the published {expected}: not the official "
                f"{published.filename} ({published.url})"
            )
    known = record.get(published.filename).get("sha256")
    if known and known != sha256:
        raise ChecksumMismatch(
            f"{label}: sha256 {sha256} differs from the {known} recorded for {published.filename} in {record.path}"
            + (
                "; its publisher gives no checksum, so one of the two copies is not the official file"
                if not published.checksum
                else ""
            )
        )
    if not known:
        if not published.checksum:
            where = record.path.name
            print(f"note: {published.filename}: its publisher gives no checksum; recorded sha256 {sha256} in {where}")
        record.update(published.filename, url=published.url, sha256=sha256, licence=published.licence)
    return sha256


def fetch(published: Published, folder: Path, record: DigestRecord, progress: bool = True) -> Path:
    """``folder/<filename>``: downloaded if missing (resuming a kept ``.part``), and checked (:func:`check`)
    before it takes its name; a download that fails the check is removed, so the next call fetches it anew.
    A file already there is returned as it is (the caller checks it when it should)."""
    path = Path(folder) / published.filename
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    transfer(published.url, part, progress)
    try:
        check(part, published, record, published.filename)
    except ChecksumMismatch as err:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{err}; the download was removed: rerun to fetch it again") from None
    os.replace(part, path)
    return path


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


def remove_stale_parts(folder: Path) -> None:
    """Delete the temporary files of writers that died (``kill -9``) before renaming them."""
    for part in folder.glob(".*.part"):
        pid = part.name.rsplit(".", 2)[-2].split("-")[0]  # .<name>.<pid>-<thread>.part
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):  # (a read-only store keeps them; they are never read)
                part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0
