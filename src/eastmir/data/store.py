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

Filling a collection (plan what is missing, compute each entry alone,
write, record what failed) is :mod:`eastmir.data.fill`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eastmir.data.sources import SourceIndex, content_sha256, file_stat
from eastmir.errors import SourceError, StoreError
from eastmir.fetch import atomic_write
from eastmir.filelock import first_process, hold

FOOTER = struct.Struct("<8sIQ")  # magic, CRC-32 of the .npy bytes, their length
MAGIC = b"EASTMIR1"


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
        """Hold this collection while filling it. A second process that would fill it at the same time says
        so and waits for the first to finish (or die: a dead holder's lock is released by the system); the
        filler then plans again, so it computes only what is still missing and every entry is written once.
        Only the first process of a multi-process job locks: its other ranks fill their share under it."""
        if not first_process():
            yield
            return
        with hold(self.folder / ".building", waiting=self._say_waiting):
            yield

    def _say_waiting(self, holder: str) -> None:
        print(f"{self.folder} is being filled by {holder}: waiting for it (what it stores is reused)", flush=True)


@dataclass(frozen=True)
class Store:
    """The cache root; :meth:`collection` opens (or creates) the folder of one producer."""

    root: Path

    def collection(self, producer: Producer) -> Collection:
        folder = self.root / producer.kind / f"{producer.name}-{producer.key}"
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / "producer.json"
        text = json.dumps(producer.describe(), indent=1, sort_keys=True, default=str)
        if not meta.is_file() or meta.read_text() != text:
            atomic_write(meta, text)
        return Collection(folder, producer)
