"""One way to write an output: every file a command writes at a place the user names (``--out``, ``--csv``,
``--report``) or into a folder it makes for the user (a report, an export) goes through :class:`Outputs`.

The rules, checked by :meth:`Outputs.check` before any long work starts:

- **never onto an input**: a path that is one of the command's inputs (an audio file being tagged, the run's
  checkpoint, config or metrics) is refused, whatever ``--overwrite`` says;
- **never over a file eastmir did not write**: an existing file is replaced only with ``--overwrite``, or
  when eastmir wrote it itself into one of its own output folders and it is unchanged since (each such folder
  keeps ``.eastmir-outputs.json``: the name and sha256 of every file it wrote there);
- **the parent folder must exist** (a missing one is named, not created: a typo in ``--out`` makes nothing
  outside the named output), and a file is not written where a folder stands, nor a folder where a file does;
- **atomically**: a reader sees the old file or the whole new one (:func:`eastmir.fetch.atomic_writer`).

The run directory's own state (``metrics.json``, ``config.yaml``, checkpoints) and the store are eastmir's
working files, written with :func:`eastmir.fetch.atomic_write` directly; they are never a user's output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from eastmir.errors import EastmirError
from eastmir.fetch import atomic_write, atomic_writer
from eastmir.paths import path_kind

LEDGER = ".eastmir-outputs.json"


class OutputError(EastmirError):
    """An output path that would destroy an input or a user's file, or that cannot be written."""


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _sha256(path: Path) -> str | None:
    """The file's digest; a folder's (a bundle such as a Core ML package): of its files' names and digests."""
    if path.is_dir() and not path.is_symlink():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path).as_posix()}\0{_sha256(item)}\0".encode())
        return digest.hexdigest()
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError:
        return None


def _ledger(folder: Path) -> dict[str, str]:
    try:
        blob = json.loads((folder / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return blob if isinstance(blob, dict) else {}


@dataclass(frozen=True)
class Outputs:
    """The output rules of one command: its ``inputs`` (files, and folders whose every file is an input) and
    whether the user passed ``--overwrite``."""

    overwrite: bool = False
    inputs: tuple[Path, ...] = field(default=())

    def with_inputs(self, paths: Iterable[str | Path]) -> Outputs:
        return Outputs(self.overwrite, (*self.inputs, *(Path(p) for p in paths)))

    # ------------------------------------------------------------------ checks
    def _input_named(self, path: Path) -> Path | None:
        real = _real(path)
        for given in self.inputs:
            other = _real(given)
            if real == other or (given.is_dir() and real.startswith(other.rstrip(os.sep) + os.sep)):
                return given
        return None

    def check(self, path: str | Path, what: str = "--out") -> Path:
        """The absolute ``path`` a file may be written to, or :class:`OutputError` naming why not."""
        path = Path(path).absolute()
        source = self._input_named(path)
        if source is not None:
            inside = "" if _real(source) == _real(path) else f" (inside {source})"
            raise OutputError(
                f"{what} {path}: that is one of this command's inputs{inside}; writing there would destroy it. "
                "Choose another path"
            )
        self._parent(path, what)
        kind = path_kind(path)
        if kind == "a folder":
            raise OutputError(f"{what} {path}: a folder stands there; name a file (e.g. {path / 'out'}…)")
        if kind not in (None, "missing", "a broken symbolic link"):
            raise OutputError(f"{what} {path}: {kind} stands there, not a file eastmir can replace")
        if kind is None and not self.overwrite and not written_by_eastmir(path):
            raise OutputError(
                f"{what} {path}: the file exists and eastmir did not write it; pass --overwrite to replace it, "
                "or choose another path"
            )
        return path

    def check_bundle(self, path: str | Path, what: str = "--out") -> Path:
        """The absolute ``path`` a bundle (a folder that is one output, such as a Core ML package) may be written
        to, or :class:`OutputError`: a folder there is replaced only when eastmir wrote it or with overwrite."""
        path, kind = self._target(path, what, "path")
        if kind is None:
            raise OutputError(f"{what} {path}: a file stands there; this output is a folder, name another path")
        if kind not in ("a folder", "missing"):
            raise OutputError(f"{what} {path}: {kind} stands there, not a folder eastmir can replace")
        if kind == "a folder" and not self.overwrite and not written_by_eastmir(path):
            raise OutputError(
                f"{what} {path}: the folder exists and eastmir did not write it; pass --overwrite to replace it, "
                "or choose another path"
            )
        return path

    def write_bundle(self, path: str | Path, made: Path, what: str = "--out") -> Path:
        """Move the folder ``made`` (complete, on the same file system) to ``path`` under the rules
        (:meth:`check_bundle`); what stood there goes only once the new one is in place."""
        path = self.check_bundle(path, what)
        replaced = None
        if path.exists():
            replaced = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            os.replace(path, replaced)
        os.replace(made, path)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        _record(path)
        return path

    def check_folder(self, path: str | Path, what: str = "--out") -> Path:
        """The absolute ``path`` of an output folder (existing or to be made), or :class:`OutputError`."""
        path, kind = self._target(path, what, "folder")
        if kind not in ("a folder", "missing"):
            shown = "a file" if kind is None else kind
            raise OutputError(f"{what} {path}: {shown} stands there; name a folder (new, or one eastmir wrote)")
        return path

    def _target(self, path: str | Path, what: str, noun: str) -> tuple[Path, str | None]:
        """The absolute ``path`` of a folder output and what stands there (:func:`~eastmir.paths.path_kind`),
        once it is known not to be an input and its parent to be a folder."""
        path = Path(path).absolute()
        if self._input_named(path) is not None:
            raise OutputError(f"{what} {path}: that is one of this command's inputs; choose another {noun}")
        self._parent(path, what)
        return path, path_kind(path)

    @staticmethod
    def _parent(path: Path, what: str) -> None:
        parent = path.parent
        kind = path_kind(parent)
        if kind == "missing":
            raise OutputError(f"{what} {path}: the folder {parent} does not exist; create it first or choose another")
        if kind != "a folder":
            raise OutputError(f"{what} {path}: {parent} is {kind or 'a file'}, not a folder")

    # ------------------------------------------------------------------ writes
    def folder(self, path: str | Path, what: str = "--out") -> Path:
        """Make (or reuse) the output folder ``path`` and mark it as eastmir's (its ledger)."""
        path = self.check_folder(path, what)
        path.mkdir(exist_ok=True)
        if not (path / LEDGER).is_file():
            atomic_write(path / LEDGER, "{}\n", durable=False)
        return path

    def write(self, path: str | Path, data: str | bytes, what: str = "--out") -> Path:
        """Write ``data`` to ``path`` under the rules (text as UTF-8); returns the absolute path."""
        with self.open(path, what) as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        return Path(path).absolute()

    @contextmanager
    def open(self, path: str | Path, what: str = "--out", text: bool = False) -> Iterator[IO]:
        """A handle to write ``path`` through, under the rules; the file takes its name when the block ends."""
        path = self.check(path, what)
        with atomic_writer(path, text=text) as fh:
            yield fh
        _record(path)

    def subfolder(self, path: str | Path) -> Path:
        """A folder inside an output folder (``figures/``), marked as eastmir's too."""
        return self.folder(path, "output folder")


def written_by_eastmir(path: str | Path) -> bool:
    """Whether ``path`` is a file eastmir wrote into one of its output folders and nobody changed since."""
    path = Path(path)
    recorded = _ledger(path.parent).get(path.name)
    return recorded is not None and recorded == _sha256(path)


def _record(path: Path) -> None:
    """Note ``path``'s digest in its folder's ledger, where that folder is one of eastmir's output folders."""
    ledger_file = path.parent / LEDGER
    if not ledger_file.is_file():
        return
    entries = _ledger(path.parent)
    entries[path.name] = _sha256(path) or ""
    with contextlib.suppress(OSError):
        atomic_write(ledger_file, json.dumps(entries, indent=1, sort_keys=True) + "\n", durable=False)


__all__ = ["LEDGER", "OutputError", "Outputs", "written_by_eastmir"]
