"""Reading a TensorFlow 1 checkpoint (tensor bundle, format V2) without TensorFlow.

A bundle is ``<prefix>.index`` and ``<prefix>.data-00000-of-00001``:

- the ``.index`` is an SSTable (the LevelDB table format): a 48-byte footer
  (two block handles and a magic number), an index block pointing to the
  data blocks, and data blocks of prefix-compressed key / value entries with
  restart points; each block ends with a compression byte (0: none) and a
  masked CRC-32C;
- each value is a ``BundleEntryProto`` (protobuf): dtype (field 1), shape
  (2), shard (3), offset (4), size (5), masked CRC-32C of the bytes (6); the
  entry with the empty key is the ``BundleHeaderProto``;
- the data file holds the raw little-endian arrays.

Every block and every tensor read is checked against its CRC-32C; a
mismatch names the file and the tensor.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from eastmir.errors import WeightsUnavailable

MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


def crc32c(data: bytes) -> int:
    import google_crc32c

    return google_crc32c.value(data)


def masked(crc: int) -> int:
    """The masking TensorFlow and LevelDB apply to stored CRCs."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _block(blob: bytes, offset: int, size: int, path: Path) -> bytes:
    body = blob[offset : offset + size]
    kind, stored = blob[offset + size], struct.unpack_from("<I", blob, offset + size + 1)[0]
    if len(body) != size or masked(crc32c(body + bytes([kind]))) != stored:
        raise WeightsUnavailable(f"{path}: a block of the checkpoint index fails its checksum (corrupted file)")
    if kind != 0:
        raise WeightsUnavailable(f"{path}: compressed index blocks are not supported")
    return body


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The key / value pairs of one SSTable block (keys are prefix-compressed)."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    out, key, at = [], b"", 0
    while at < end:
        shared, at = _varint(block, at)
        unshared, at = _varint(block, at)
        length, at = _varint(block, at)
        key = key[:shared] + block[at : at + unshared]
        at += unshared
        out.append((key, block[at : at + length]))
        at += length
    return out


def _message(buf: bytes) -> dict[int, list]:
    """A protobuf message as field number → values (varints as ints, length-delimited as bytes)."""
    fields: dict[int, list] = {}
    at = 0
    while at < len(buf):
        tag, at = _varint(buf, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(buf, at)
        elif wire == 2:
            length, at = _varint(buf, at)
            value, at = buf[at : at + length], at + length
        elif wire == 5:
            value, at = struct.unpack_from("<I", buf, at)[0], at + 4
        elif wire == 1:
            value, at = struct.unpack_from("<Q", buf, at)[0], at + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def read_bundle(index: str | Path, data: str | Path | None = None, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every tensor of a bundle as numpy arrays: ``index`` is its ``.index`` file, ``data`` its single data
    shard (default: ``<prefix>.data-00000-of-00001`` beside the index).

    Tensors whose name contains one of ``skip`` (such as optimiser slots) are
    not read. Raises :class:`~eastmir.errors.WeightsUnavailable` naming the
    file when a block or a tensor fails its CRC-32C.
    """
    index_path = Path(index)
    data_path = Path(data) if data else Path(str(index_path)[: -len(".index")] + ".data-00000-of-00001")
    blob = index_path.read_bytes()
    if len(blob) < 48 or struct.unpack_from("<Q", blob, len(blob) - 8)[0] != MAGIC:
        raise WeightsUnavailable(f"{index_path}: not a TensorFlow checkpoint index (no SSTable footer)")
    footer = blob[-48:]
    _, at = _varint(footer, 0)  # metaindex handle: offset, size
    _, at = _varint(footer, at)
    index_offset, at = _varint(footer, at)
    index_size, _ = _varint(footer, at)
    data = data_path.read_bytes()
    tensors: dict[str, np.ndarray] = {}
    for _, handle in _entries(_block(blob, index_offset, index_size, index_path)):
        offset, at = _varint(handle, 0)
        size, _ = _varint(handle, at)
        for key, value in _entries(_block(blob, offset, size, index_path)):
            name = key.decode()
            if not name or any(s in name for s in skip):
                continue  # the header entry, or a tensor not wanted
            entry = _message(value)
            dtype = DTYPES[entry.get(1, [1])[0]]
            dims = [_message(d).get(1, [0])[0] for d in _message(entry[2][0]).get(2, [])] if 2 in entry else []
            start, length = entry.get(4, [0])[0], entry.get(5, [0])[0]
            raw = data[start : start + length]
            if len(raw) != length or (6 in entry and masked(crc32c(raw)) != entry[6][0]):
                raise WeightsUnavailable(f"{data_path}: tensor {name} fails its checksum (corrupted file)")
            tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    return tensors
