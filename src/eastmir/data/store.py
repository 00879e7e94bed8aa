"""The one store: every cached array (log-mels, decoded waveforms, teacher
embeddings) lives here, keyed by what it was made from.

Layout under the cache root (``{workdir}/cache`` by default)::

    <kind>/<name>-<producer key>/producer.json     who made the entries, with which settings
    <kind>/<name>-<producer key>/<source key>.npy  one entry per source file
    <kind>/<name>-<producer key>/failures.json     sources the last build could not use, and why

- The **producer key** hashes everything that changes an entry: the front-end
  settings, or the teacher's name, version, weights sha256 and options, and
  the entry shape it promises. Another setting is another folder.
- The **source key** is the source file's content (sha256; :mod:`eastmir.data.sources`
  finds it the way git's index does: stat fields decide when to hash again).
  A re-rendered or replaced file gets a new key, so a stale entry is never
  read for it; a moved or copied dataset keeps its entries.
- An **entry** is a standard ``.npy`` file followed by a 20-byte footer
  (``EASTMIR1``, CRC-32 and length of the ``.npy`` bytes): ``numpy.load``
  still opens it, and :func:`read_entry` detects a truncated or altered file.
  It is written to a temporary name and renamed (atomic), after checking that
  it is finite and has the promised shape.
- An entry's **bytes depend on its source alone**: every entry is computed by
  its own call on one intra-op thread (:func:`compute_each`), so neither the
  batch size, the clips beside it, the number of processes or threads, nor a
  resume changes a bit of it (batched or multi-threaded BLAS and oneDNN calls
  choose their kernels and summation order by the batch shape and the thread
  count). Clips run in parallel on threads or processes instead.

:func:`fill` is the one build loop (decode or read each source, compute,
validate, write, report what failed) used by ``features``, ``extract`` and
the ``precomputed`` import.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError
from eastmir.data.sources import SourceIndex, content_sha256, file_stat
from eastmir.errors import SourceError, StoreError
from eastmir.fetch import atomic_write
from eastmir.filelock import Held, first_process, hold

FOOTER = struct.Struct("<8sIQ")  # magic, CRC-32 of the .npy bytes, their length
MAGIC = b"EASTMIR1"
ON_ERROR = ("raise", "skip")


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def source_key(path: str | Path, known: dict | None = None, index: SourceIndex | None = None) -> str:
    """Identity of a source file: the first 24 hex digits of its content's sha256 (:mod:`eastmir.data.sources`:
    ``known`` is the manifest's record of it, ``index`` the store's; the stat fields only decide when to hash).

    Raises :class:`FileNotFoundError` when the file does not exist.
    """
    if index is not None:
        return index.sha256(path, known)[:24]
    if known and tuple(known.get("stat", ())) == file_stat(path):
        return known["sha256"][:24]
    return content_sha256(path)[:24]


def combined_key(keys: Sequence[str]) -> str:
    """The key of an entry made from other entries (an ensemble's, from its members' keys)."""
    return _digest("\0".join(keys), 24)


@dataclass(frozen=True)
class Producer:
    """What makes a collection's entries.

    ``kind`` is ``logmel``, ``waveform`` or ``embedding``; ``name`` a readable
    label (``logmel``, ``aisfx``); ``settings`` every value that changes the
    output (JSON-serialisable); ``shape`` the promised entry shape, ``None``
    for an axis of any positive length (time).
    """

    kind: str
    name: str
    settings: dict[str, Any]
    shape: tuple[int | None, ...]

    @property
    def key(self) -> str:
        blob = json.dumps([self.kind, self.name, self.settings, list(self.shape)], sort_keys=True, default=str)
        return _digest(blob, 16)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "settings": self.settings, "shape": list(self.shape)}


def check_array(array: np.ndarray, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """``array`` as float32 if it is finite and matches ``shape``; else :class:`SourceError` naming ``what``."""
    array = np.asarray(array)
    if array.ndim != len(shape) or any(
        (want is not None and have != want) or have < 1 for have, want in zip(array.shape, shape)
    ):
        expected = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise SourceError(f"{what}: shape {tuple(array.shape)}, expected {expected}")
    if not np.issubdtype(array.dtype, np.number):
        raise SourceError(f"{what}: holds {array.dtype} values, expected numbers")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise SourceError(f"{what}: {bad} of {array.size} values are NaN or infinite")
    return array


def write_entry(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a checksummed ``.npy`` entry, atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    payload = buffer.getvalue()
    atomic_write(path, payload + FOOTER.pack(MAGIC, zlib.crc32(payload), len(payload)), durable=False)


def _corrupted(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path}: corrupted store entry ({why}); delete it and rerun the command that built it "
        "(`eastmir features` or `eastmir extract`: they rebuild only what is missing)"
    )


def read_entry(path: str | Path) -> np.ndarray:
    """Read an entry written by :func:`write_entry`, checking its footer and checksum.

    One buffer per read: the array is a view of the bytes read from disk (no
    copies: at 512 KB per log-mel, allocating and faulting in extra buffers cost
    more than the checksum).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            blob = bytearray(os.fstat(fh.fileno()).st_size)
            size = fh.readinto(blob)
    except FileNotFoundError:
        raise StoreError(f"{path}: store entry missing; rerun `eastmir features` or `eastmir extract`") from None
    if size < FOOTER.size:
        raise _corrupted(path, "truncated")
    magic, crc, length = FOOTER.unpack_from(blob, size - FOOTER.size)
    if magic != MAGIC or length != size - FOOTER.size:
        raise _corrupted(path, "truncated or not written by eastmir")
    if zlib.crc32(memoryview(blob)[:length]) != crc:
        raise _corrupted(path, "checksum mismatch")
    return _array_view(path, blob, length)


def _array_view(path: Path, blob: bytearray, length: int) -> np.ndarray:
    """The array of the ``.npy`` bytes in ``blob[:length]``, as a view."""
    if blob[:6] != b"\x93NUMPY":
        raise _corrupted(path, "not a .npy payload")
    major = blob[6]
    start, size_format = (10, "<H") if major == 1 else (12, "<I")
    (header_length,) = struct.unpack_from(size_format, blob, 8)
    header = io.BytesIO(bytes(blob[: start + header_length]))
    version = np.lib.format.read_magic(header)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(header)
    count = int(np.prod(shape))
    if dtype.hasobject or start + header_length + count * dtype.itemsize != length:
        raise _corrupted(path, "its header does not match its size")
    array = np.frombuffer(blob, dtype=dtype, count=count, offset=start + header_length)
    return array.reshape(shape, order="F" if fortran else "C")


def entry_shape(path: str | Path) -> tuple[int, ...]:
    """The shape of an entry, from its ``.npy`` header alone (no checksum)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(fh)
    return tuple(shape)


class Collection:
    """The entries of one producer: ``entry(source key) -> Path``, ``write``, ``read``."""

    def __init__(self, folder: Path, producer: Producer) -> None:
        self.folder = folder
        self.producer = producer

    def entry(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.entry(key).is_file()

    def write(self, key: str, array: np.ndarray, what: str) -> None:
        """Validate ``array`` against the producer's shape (``what`` names it in errors) and store it."""
        write_entry(self.entry(key), check_array(array, self.producer.shape, what))

    def read(self, key: str) -> np.ndarray:
        return read_entry(self.entry(key))

    @property
    def failures_file(self) -> Path:
        return self.folder / "failures.json"

    @contextmanager
    def building(self) -> Iterator[None]:
        """Hold this collection while filling it: a second process that would build it at the same time gets a
        :class:`StoreError` naming the holder (a dead holder's lock is taken over). Only the first process of a
        multi-process job locks: its other ranks fill their share under it."""
        if not first_process():
            yield
            return
        try:
            with hold(self.folder / ".building"):
                yield
        except Held as held:
            raise StoreError(
                f"{self.folder} is being filled by {held.holder}; wait for it to finish, then rerun "
                "(what it stored is reused)"
            ) from None


class Store:
    """The cache root; :meth:`collection` opens (or creates) the folder of one producer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def collection(self, producer: Producer) -> Collection:
        folder = self.root / producer.kind / f"{producer.name}-{producer.key}"
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "producer.json"
        text = json.dumps(producer.describe(), indent=1, sort_keys=True, default=str)
        if not meta.is_file() or meta.read_text() != text:
            atomic_write(meta, text)
        return Collection(folder, producer)


@dataclass
class SourceItem:
    """One clip to store: its id (for messages), the file its entry is made from, and the manifest's record of
    that file's content (``{"sha256", "stat"}``; ``None`` when it has none)."""

    clip_id: str
    path: Path
    known: dict | None = None


@dataclass
class FillReport:
    """What :func:`fill` did: entries ``built`` now, ``cached`` before, ``failed`` (clip id → reason)."""

    built: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # clip id → source key, for every usable clip

    def summary(self, collection: Collection) -> str:
        """``"12 stored now, 84 already stored, 1 left out (see …/failures.json); store: …"``."""
        left = f", {len(self.failed)} left out (see {collection.failures_file})" if self.failed else ""
        return f"{self.built} stored now, {self.cached} already stored{left}; store: {collection.folder}"


def fill(
    collection: Collection,
    items: Sequence[SourceItem],
    read: Callable[[Path], np.ndarray],
    compute: Callable[[list[np.ndarray]], list[np.ndarray]],
    batch_size: int = 1,
    on_error: str = "raise",
    progress: bool = True,
    desc: str = "store",
    workers: int = 0,
    verify: bool = False,
) -> FillReport:
    """Make the entry of every item that has none; resumable and safe to interrupt.

    Each source is ``read`` (decoded audio, a user's embedding file) and
    ``compute``d alone on one intra-op thread (:func:`compute_each`; up to
    ``batch_size`` or the torch thread count are read, then computed in
    parallel); each result is validated and written atomically.
    With ``workers`` > 0 (and ``batch_size`` 1) the items are built in that
    many worker processes (``read`` and ``compute`` must then be picklable).
    ``verify`` re-reads every existing entry and rebuilds a corrupted one.
    A source that cannot be used (missing, undecodable, wrong shape,
    non-finite) is recorded with its reason in ``failures.json``; then with
    ``on_error="raise"`` a :class:`StoreError` names every one of them (the
    good entries are kept, so a rerun does only what is left), with
    ``"skip"`` they are reported and left out.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if not verify:  # a complete collection is only read: no lock, nothing written (a read-only store; many runs)
        report, todo = plan_fill(collection, items)
        if not todo:
            finish_fill(collection, report, on_error)
            return report
    with collection.building():
        return _fill(collection, items, read, compute, batch_size, on_error, progress, desc, workers, verify)


def _fill(collection, items, read, compute, batch_size, on_error, progress, desc, workers, verify) -> FillReport:
    report, todo = plan_fill(collection, items, verify)
    with tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress or not todo) as bar:
        if workers > 0 and batch_size == 1 and len(todo) > 1:
            _fill_in_workers(collection, todo, read, compute, workers, report, bar)
        else:
            _fill_here(collection, todo, read, compute, batch_size, report, bar)
    finish_fill(collection, report, on_error)
    return report


def plan_fill(
    collection: Collection, items: Sequence[SourceItem], verify: bool = False
) -> tuple[FillReport, list[tuple[SourceItem, str]]]:
    """What :func:`fill` has to do: the report so far (cached entries, missing sources) and the ``(item, key)``
    pairs still to build. Other executors (batched teacher extraction, DDP) start here too."""
    remove_stale_parts(collection.folder)
    report = FillReport()
    todo: list[tuple[SourceItem, str]] = []
    index = SourceIndex(collection.folder.parents[1])
    for item in items:
        try:
            key = source_key(item.path, item.known, index)
        except FileNotFoundError:
            report.failed[item.clip_id] = f"{item.path}: file not found"
            continue
        except IsADirectoryError:
            report.failed[item.clip_id] = f"{item.path}: a folder, not a file"
            continue
        if collection.has(key) and not (verify and _corrupted_entry(collection, key)):
            report.cached += 1
            report.keys[item.clip_id] = key
        else:
            todo.append((item, key))
    index.close()
    return report, todo


def finish_fill(collection: Collection, report: FillReport, on_error: str) -> None:
    """Write ``failures.json`` and raise or report, as :func:`fill` does at its end."""
    _record_failures(collection, report, on_error)


def _corrupted_entry(collection: Collection, key: str) -> bool:
    try:
        collection.read(key)
    except StoreError as err:
        print(f"warning: {err}: rebuilding it")
        collection.entry(key).unlink(missing_ok=True)
        return True
    return False


def compute_each(
    compute: Callable[[list[np.ndarray]], list[np.ndarray]], arrays: Sequence[np.ndarray], threads: int = 1
) -> list[np.ndarray]:
    """``[compute([a])[0] for a in arrays]``, each call on one intra-op thread, ``threads`` calls at a time.

    This is what makes an entry's bytes independent of how clips were batched
    and where they ran: every clip goes through the same shapes on one
    thread, whatever the batch, its neighbours, the process count or the
    machine's thread setting (see the module docstring). The process's torch
    thread count is restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(array: np.ndarray) -> np.ndarray:
        torch.set_num_threads(1)  # this thread's own OpenMP setting, which a new thread does not inherit
        with torch.no_grad():
            return compute([array])[0]

    try:
        if threads <= 1 or len(arrays) <= 1:
            return [one(array) for array in arrays]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(threads, len(arrays))) as pool:
            return list(pool.map(one, arrays))
    finally:
        torch.set_num_threads(before)


def compute_threads() -> int:
    """How many clips :func:`compute_each` computes at once in this process: its torch thread count."""
    import torch

    return torch.get_num_threads()


def _fill_here(collection, todo, read, compute, batch_size, report, bar) -> None:
    threads = compute_threads()
    pending: list[tuple[SourceItem, str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        outputs = compute_each(compute, [array for _, _, array in pending], threads)
        for (item, key, _), out in zip(pending, outputs, strict=True):
            try:
                collection.write(key, out, what(collection, item))
            except SourceError as err:
                report.failed[item.clip_id] = str(err)
                continue
            report.built += 1
            report.keys[item.clip_id] = key
        bar.update(len(pending))
        pending.clear()

    for item, key in todo:
        try:
            array = read(item.path)
        except (AudioDecodeError, SourceError) as err:
            report.failed[item.clip_id] = str(err)
            bar.update(1)
            continue
        if len(pending) >= max(batch_size, threads):
            flush()
        pending.append((item, key, array))
    flush()


def what(collection: Collection, item: SourceItem) -> str:
    return f"{item.path} ({collection.producer.name} output for clip {item.clip_id})"


def _build_one(collection: Collection, item: SourceItem, key: str, read, compute) -> str | None:
    """Build one entry (in a worker process); returns why it failed, or ``None``."""
    try:
        collection.write(key, compute_each(compute, [read(item.path)])[0], what(collection, item))
    except (AudioDecodeError, SourceError) as err:
        return str(err)
    return None


def _worker_start() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already


def _fill_in_workers(collection, todo, read, compute, workers, report, bar) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start) as pool:
        futures = {pool.submit(_build_one, collection, item, key, read, compute): (item, key) for item, key in todo}
        for future in as_completed(futures):
            item, key = futures[future]
            failure = future.result()
            if failure is None:
                report.built += 1
                report.keys[item.clip_id] = key
            else:
                report.failed[item.clip_id] = failure
            bar.update(1)


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


def _record_failures(collection: Collection, report: FillReport, on_error: str) -> None:
    path = collection.failures_file
    if not report.failed:
        if path.exists():  # (a read-only store refuses even the removal of a file that is not there)
            path.unlink()
        return
    text = json.dumps(report.failed, indent=1)
    if not (path.is_file() and path.read_text() == text):  # (a read-only store holding the same list is fine)
        atomic_write(path, text)
    first = "; ".join(f"{clip}: {why}" for clip, why in list(report.failed.items())[:3])
    more = f" (and {len(report.failed) - 3} more)" if len(report.failed) > 3 else ""
    if on_error == "raise":
        raise StoreError(
            f"{len(report.failed)} clip(s) could not be used, listed in {path}: {first}{more}; "
            "fix or remove them, or rerun with --on-error skip (data.on_error: skip) to leave them out"
        )
    print(f"warning: left out {len(report.failed)} clip(s) that could not be used; see {path}")
