"""The identity of a source file: its content, found the way git's index finds it.

A store entry is keyed by the sha256 of the file it was made from, so a file
replaced by another (even of the same size, with its modification time put
back) never gets the old file's entry, and a dataset moved or copied
elsewhere keeps its entries. Hashing every file on every run would cost a
full read of the dataset, so the stat fields (size, mtime_ns, ctime_ns,
inode) only decide when a file must be hashed again:

- ``prepare`` records each clip's sha256 and stat fields in the manifest
  (:func:`record_contents`; it reads every file anyway);
- when a file's stat fields differ from what is recorded there, it is hashed
  again and remembered in the store's ``sources.sqlite`` (path → stat, sha256),
  so the next run does not hash it again.

The change time cannot be set by a user, so a file rewritten and given its
old modification time is still hashed again.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

Stat = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


def file_stat(path: str | Path) -> Stat:
    """The stat fields that decide when ``path`` must be hashed again; :class:`FileNotFoundError` if missing."""
    info = os.stat(path)
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def content_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def record_contents(paths: Sequence[Path], recorded: Sequence[dict | None] = (), threads: int = 4) -> list[dict]:
    """``{"sha256", "stat"}`` of each file (for the manifest); a ``recorded`` one whose stat still holds is kept."""
    from concurrent.futures import ThreadPoolExecutor

    previous = list(recorded) or [None] * len(paths)

    def one(i: int) -> dict:
        stat = file_stat(paths[i])
        old = previous[i]
        if old and tuple(old.get("stat", ())) == stat:
            return old
        return {"sha256": content_sha256(paths[i]), "stat": list(stat)}

    with ThreadPoolExecutor(max_workers=threads) as pool:  # hashing releases the GIL
        return list(pool.map(one, range(len(paths))))


class SourceIndex:
    """The store's memory of the files it hashed: ``sources.sqlite`` under the store root (path → stat, sha256).

    A read-only store works without it (files whose manifest record no longer
    holds are then hashed on every run).
    """

    def __init__(self, root: str | Path) -> None:
        self.file = Path(root) / "sources.sqlite"
        self._local = threading.local()
        self._memo: dict[tuple[str, Stat], str] = {}

    def _db(self) -> sqlite3.Connection | None:
        if not hasattr(self._local, "db"):
            try:
                db = sqlite3.connect(self.file, timeout=60)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS sources (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                    "ctime_ns INTEGER, inode INTEGER, sha256 TEXT)"
                )
                db.commit()
            except sqlite3.Error:
                db = None
            self._local.db = db
        return self._local.db

    def sha256(self, path: str | Path, known: dict | None = None) -> str:
        """The content sha256 of ``path``: ``known`` (the manifest's record) or the index's while the stat fields
        match, else hashed now (and remembered). :class:`FileNotFoundError` when it is missing."""
        path = Path(path).absolute()
        stat = file_stat(path)
        if known and tuple(known.get("stat", ())) == stat:
            return known["sha256"]
        memo_key = (str(path), stat)
        if memo_key in self._memo:
            return self._memo[memo_key]
        db = self._db()
        row = None
        if db is not None:
            row = db.execute(
                "SELECT sha256 FROM sources WHERE path=? AND size=? AND mtime_ns=? AND ctime_ns=? AND inode=?",
                (str(path), *stat),
            ).fetchone()
        digest = row[0] if row else content_sha256(path)
        if row is None and db is not None:
            try:
                db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?)", (str(path), *stat, digest))
                db.commit()
            except sqlite3.Error:  # a read-only store: remember it in this process only
                pass
        self._memo[memo_key] = digest
        return digest

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            del self._local.db


__all__ = ["SourceIndex", "Stat", "content_sha256", "file_stat", "record_contents"]
