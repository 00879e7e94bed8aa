"""The layout of an MPEG audio file (MP3, MP2), read from its bytes: tags, frames, length header.

libsndfile (through mpg123) does not count an MP3's frames: without a
Xing/Info/VBRI header it estimates the length from the file size, tags
included, and then stops decoding at that estimate. A 2 kB ID3 tag (iTunes,
cover art) makes a complete file look short, and a VBR file without a length
header can lose audio silently. :func:`stream_layout` walks the frame headers
(ISO/IEC 11172-3 and 13818-3) so the decoder can be handed the audio stream
alone (:func:`audio_stream`) and what it returns can be checked against what
the file really holds.

Imports nothing of ours (like :mod:`eastmir.audio`, which uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

# bitrates in kbit/s by (MPEG-1?, layer) and the 4-bit index; sample rates by version and the 2-bit index
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # version bits → Hz


@dataclass(frozen=True)
class Frame:
    """One frame header: where it starts, its length in bytes, samples per channel, sample rate, channels."""

    offset: int
    length: int
    samples: int
    sample_rate: int
    channels: int
    mpeg1: bool


def parse_header(blob: bytes | memoryview, offset: int) -> Frame | None:
    """The frame whose 4-byte header starts at ``offset``, or ``None`` if no valid header is there."""
    if offset + 4 > len(blob) or blob[offset] != 0xFF or (blob[offset + 1] & 0xE0) != 0xE0:
        return None
    b1, b2, b3 = blob[offset + 1], blob[offset + 2], blob[offset + 3]
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values; free-format streams (index 0) are not walked
    mpeg1, layer = version == 3, 4 - layer_bits
    bitrate = _BITRATES[mpeg1, layer][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    if layer == 1:
        length, samples = (12 * bitrate // rate + padding) * 4, 384
    elif layer == 2 or mpeg1:
        length, samples = 144 * bitrate // rate + padding, 1152
    else:
        length, samples = 72 * bitrate // rate + padding, 576
    channels = 1 if (b3 >> 6) == 3 else 2
    return Frame(offset, length, samples, rate, channels, mpeg1)


def _id3v2_end(blob: bytes) -> int:
    """Bytes taken by ID3v2 tags at the start (several may follow each other)."""
    end = 0
    while blob[end : end + 3] == b"ID3" and len(blob) >= end + 10:
        size = 0
        for byte in blob[end + 6 : end + 10]:
            size = (size << 7) | (byte & 0x7F)
        end += 10 + size + (10 if blob[end + 5] & 0x10 else 0)  # header, body, optional footer
    return min(end, len(blob))


def _trailing_tags_start(blob: bytes, end: int) -> int:
    """Where the tags after the audio begin (ID3v1, APEv2, Lyrics3), or ``end``."""
    while True:
        if end >= 128 and blob[end - 128 : end - 125] == b"TAG":
            end -= 128
        elif end >= 32 and blob[end - 32 : end - 24] == b"APETAGEX":
            size = int.from_bytes(blob[end - 20 : end - 16], "little")  # footer + items
            flags = int.from_bytes(blob[end - 12 : end - 8], "little")
            end -= size + (32 if flags & 0x80000000 else 0)  # the header too, when present
            end = max(end, 0)
        elif end >= 9 and blob[end - 9 : end] in (b"LYRICS200", b"LYRICSEND"):
            start = blob.rfind(b"LYRICSBEGIN", 0, end)
            if start < 0:
                return end
            end = start
        else:
            return end


def _length_header(blob: bytes, first: Frame) -> int | None:
    """Frames declared by a Xing/Info or VBRI header in the first frame (that frame not counted), or ``None``."""
    side = (32 if first.channels == 2 else 17) if first.mpeg1 else (17 if first.channels == 2 else 9)
    at = first.offset + 4 + side
    if blob[at : at + 4] in (b"Xing", b"Info"):
        flags = int.from_bytes(blob[at + 4 : at + 8], "big")
        return int.from_bytes(blob[at + 8 : at + 12], "big") if flags & 1 else None
    at = first.offset + 36
    if blob[at : at + 4] == b"VBRI":
        return int.from_bytes(blob[at + 14 : at + 18], "big")
    return None


@dataclass(frozen=True)
class StreamLayout:
    """What an MPEG audio file holds between its tags.

    ``start``/``end``: the byte range between the tags (first frame to the
    first trailing tag), what a decoder should be handed; ``frames``: whole
    frames found in it; ``samples``: their samples per channel (before the
    decoder drops encoder delay and padding); ``declared_frames``: what a
    Xing/Info/VBRI header says (``None`` without one); ``cut_short``: the
    last frame's ``(bytes present, bytes it needs)`` when the file ends
    inside it.
    """

    start: int
    end: int
    frames: int
    samples: int
    sample_rate: int
    declared_frames: int | None
    cut_short: tuple[int, int] | None


def stream_layout(blob: bytes) -> StreamLayout | None:
    """Walk the frames of ``blob`` (an MPEG audio file); ``None`` when no frame is found near its start."""
    start, end = _id3v2_end(blob), _trailing_tags_start(blob, len(blob))
    first = None
    for offset in range(start, min(end, start + 65536)):  # junk or padding may precede the first frame
        frame = parse_header(blob, offset)
        if frame is not None and (frame.offset + frame.length >= end or parse_header(blob, offset + frame.length)):
            first = frame
            break
    if first is None:
        return None
    declared = _length_header(blob, first)
    frames = samples = 0
    position, cut_short = first.offset, None
    while position < end:
        frame = parse_header(blob, position)
        if frame is None:
            break  # junk after the audio: the stream ends here
        if position + frame.length > end:
            cut_short = (end - position, frame.length)
            break
        frames, samples, position = frames + 1, samples + frame.samples, position + frame.length
    if declared is not None:  # the header frame carries no audio
        frames, samples = frames - 1, samples - first.samples
    return StreamLayout(first.offset, end, frames, samples, first.sample_rate, declared, cut_short)


def audio_stream(blob: bytes, layout: StreamLayout) -> bytes:
    """The bytes to hand a decoder: the stream without its tags, led by a Xing header with the frame count
    when a Layer III stream has no length header of its own (so the decoder need not guess its length)."""
    stream = blob[layout.start : layout.end]
    first = parse_header(blob, layout.start)
    if layout.declared_frames is not None or first is None or first.samples == 384 or layout.frames == 0:
        return stream
    if first.samples == 1152 and not first.mpeg1:
        return stream  # Layer II: no Xing convention
    header = bytearray(blob[layout.start : layout.start + 4])
    header[1] |= 0x01  # no CRC, so the side information starts right after the header
    header[2] &= 0xFD  # no padding
    frame = parse_header(bytes(header), 0)
    assert frame is not None
    side = (32 if frame.channels == 2 else 17) if frame.mpeg1 else (17 if frame.channels == 2 else 9)
    body = bytearray(frame.length)
    body[:4] = header
    body[4 + side : 4 + side + 12] = b"Xing" + (1).to_bytes(4, "big") + layout.frames.to_bytes(4, "big")
    return bytes(body) + stream
