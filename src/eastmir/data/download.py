"""``eastmir data prepare NAME --root DIR --download``: the official archives, fetched safely.

- Each dataset declares its archives (``Dataset.archives``: the official URL,
  the checksum its publisher gives, Zenodo's md5 for OpenMIC, FMA's sha1;
  ESC-50 and MagnaTagATune publish none, and licence).
- Resumable: a transfer goes to ``<file>.part``; an interrupted one (a cut
  connection, Ctrl-C, ``kill``) continues where it stopped with an HTTP
  ``Range`` request, automatically a few times and again on the next run.
- Verified before anything is extracted: a mismatch names the file, the
  expected and the actual sum, and the file is removed so the next run
  fetches it anew. The sha256 of every verified file is recorded in
  ``DIR/downloads.json`` and checked on later runs, also for archives whose
  publisher gives no checksum (trust on first download, said so on screen).
- Extraction refuses members that would land outside ``DIR`` (absolute
  paths, ``..``, links), and is skipped once done.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eastmir.errors import ManifestError
from eastmir.fetch import CHUNK, ChecksumMismatch, DigestRecord, FetchError, Published, check, fetch


class DownloadError(ManifestError):
    """A download could not be completed or verified; the message says how to go on."""


@dataclass(frozen=True)
class Archive(Published):
    """A dataset archive (:class:`~eastmir.fetch.Published`) and how it is unpacked."""

    extract: str = "none"  # "tar", "zip", or "none" (used as it is)
    strip: int = 0  # leading path components dropped on extraction
    join: str | None = None  # parts of one split archive: concatenated into this file, then extracted as zip


RECORD = "downloads.json"


def _fetched(archive: Archive, root: Path, record: DigestRecord, progress: bool) -> Path:
    """The archive in ``root``: fetched and checked (:func:`eastmir.fetch.fetch`), or already there and checked
    once; a copy that fails the check is removed, so the next run fetches it anew."""
    final = root / archive.filename
    try:
        if final.exists() and not record.get(archive.filename).get("sha256"):
            try:
                check(final, archive, record, archive.filename)
            except ChecksumMismatch as err:
                final.unlink()
                raise ChecksumMismatch(f"{err}; it was removed: rerun to download it again") from None
        return fetch(archive, root, record, progress)
    except FetchError as err:
        raise DownloadError(str(err)) from None


def _member_path(name: str, strip: int) -> str | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    parts = parts[strip:]
    return "/".join(parts) if parts else None


def extract(path: Path, kind: str, dest: Path, strip: int = 0) -> None:
    """Unpack ``path`` into ``dest``, dropping ``strip`` leading components; refuses members leaving ``dest``."""
    dest_real = dest.resolve()

    def target(name: str) -> Path | None:
        rel = _member_path(name, strip)
        if rel is None:
            return None
        out = (dest / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not out.is_relative_to(dest_real):
            raise DownloadError(f"{path}: member {name!r} would land outside {dest}; refusing to extract it")
        return out

    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                out = target(info.filename)
                if out is None or info.is_dir():
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    elif kind == "tar":
        with tarfile.open(path) as tf:
            for member in tf.getmembers():
                out = target(member.name)
                if out is None or not member.isfile():
                    if member.issym() or member.islnk():
                        raise DownloadError(f"{path}: member {member.name!r} is a link; refusing to extract it")
                    continue
                member.name = str(out.relative_to(dest_real))
                tf.extract(member, dest_real, filter="data")
    else:
        raise ValueError(f"unknown archive kind {kind!r}")


def download_archives(archives: tuple[Archive, ...], root: str | Path, progress: bool = True) -> None:
    """Fetch, verify and extract every archive of a dataset (its ``archives``) into ``root``; resumable, skips
    what is done."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record = DigestRecord(root / RECORD)
    joined: dict[str, list[Path]] = {}
    for archive in archives:
        if not record.get(archive.join or archive.filename).get("extracted"):
            final = _fetched(archive, root, record, progress)
            if archive.join:
                joined.setdefault(archive.join, []).append(final)
            elif archive.extract != "none":
                extract(final, archive.extract, root, archive.strip)
                record.update(archive.filename, extracted=True)
    for whole, parts in joined.items():
        if record.get(whole).get("extracted"):
            continue
        with open(root / whole, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
        extract(root / whole, "zip", root)
        record.update(whole, joined_from=[p.name for p in parts], extracted=True)
