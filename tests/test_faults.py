"""Faults a careful user hit on real data (issue 15), each with the input that showed it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from eastmir import pipeline
from eastmir.audio import AudioDecodeError, load_audio
from eastmir.mpeg import parse_header, stream_layout

RATE = 44100
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * RATE) / RATE)).astype(np.float32)


def encode(path, mode="CONSTANT", rate=RATE, signal=TONE):
    """An MP3 as libsndfile's LAME writes it: a Xing/Info frame first, then the audio frames."""
    with sf.SoundFile(path, "w", rate, 1, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode=mode) as fh:
        fh.write(signal)
    return path.read_bytes()


def id3v2(size: int) -> bytes:
    """An ID3v2.3 tag of about ``size`` bytes holding a title and a cover picture (APIC)."""
    frames = b""
    for name, body in ((b"TIT2", b"\x00Etude in C"), (b"APIC", b"\x00image/jpeg\x00\x03\x00" + bytes(size))):
        frames += name + len(body).to_bytes(4, "big") + b"\x00\x00" + body
    n = len(frames)
    synchsafe = bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])
    return b"ID3\x03\x00\x00" + synchsafe + frames


ID3V1 = b"TAG" + b"Etude".ljust(30, b"\x00") + bytes(95)
APE = b"APETAGEX" + (2000).to_bytes(4, "little") + (32).to_bytes(4, "little") + bytes(16)  # an empty APEv2 footer


def without_length_header(blob: bytes) -> bytes:
    """The stream without its first (Xing/Info) frame, as iTunes and many CBR encoders write it."""
    first = parse_header(blob, 0)
    assert first is not None and stream_layout(blob).declared_frames is not None
    return blob[first.length :]


# name → how the real-world file is made from libsndfile's own encoding
SHAPES = {
    "CBR, no length header, 2 kB ID3v2 (iTunes)": lambda b: id3v2(2048) + without_length_header(b),
    "CBR, Info header, 200 kB of cover art, ID3v1": lambda b: id3v2(200_000) + b + ID3V1,
    "CBR, no length header, ID3v2 and ID3v1": lambda b: id3v2(4096) + without_length_header(b) + ID3V1,
    "CBR, Info header, APEv2 tag": lambda b: b + APE,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_real_world_mp3_shapes_decode_whole(tmp_path, shape):
    encode(tmp_path / "plain.mp3")
    reference = load_audio(tmp_path / "plain.mp3", RATE)
    path = tmp_path / "tagged.mp3"
    path.write_bytes(SHAPES[shape]((tmp_path / "plain.mp3").read_bytes()))
    audio = load_audio(path, RATE)
    # without the LAME tag no decoder knows the encoder's delay and padding: up to two frames more
    assert len(reference) <= len(audio) <= len(reference) + 2 * 1152, (len(audio), len(reference))
    lag = len(audio) - len(reference)
    best = min(range(lag + 1 + 1105), key=lambda s: np.abs(audio[s : s + 20000] - reference[:20000]).mean())
    assert np.abs(audio[best : best + len(reference) - 2000] - reference[: len(reference) - 2000]).max() < 0.02


@pytest.mark.parametrize("mode", ["VARIABLE", "AVERAGE"])
def test_vbr_without_a_length_header_is_decoded_whole_not_cut_at_an_estimate(tmp_path, mode):
    blob = encode(tmp_path / "vbr.mp3", mode)
    assert len({blob[f.offset + 2] >> 4 for f in frames(blob)}) > 1  # really variable bitrates
    path = tmp_path / "no-header.mp3"
    path.write_bytes(id3v2(1024) + without_length_header(blob))
    assert sf.info(str(path)).frames < len(TONE) - 10_000  # libsndfile's estimate, where it would stop
    audio = load_audio(path, RATE)
    assert len(TONE) <= len(audio) <= len(TONE) + 2 * 1152


def frames(blob: bytes):
    position = 0
    while (frame := parse_header(blob, position)) is not None:
        yield frame
        position += frame.length


@pytest.mark.parametrize("header", [True, False])
def test_really_truncated_mp3s_are_still_refused(tmp_path, header):
    blob = encode(tmp_path / "whole.mp3")
    blob = id3v2(2048) + (blob if header else without_length_header(blob))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(blob[: len(blob) * 2 // 3])  # mid-frame
    with pytest.raises(AudioDecodeError, match="truncated") as info:
        load_audio(cut, RATE)
    assert info.value.kind == "truncated audio"
    if header:  # at a frame boundary: only the length header tells
        layout = stream_layout(blob)
        boundary = [f.offset for f in frames(blob[layout.start :])][60] + layout.start
        cut.write_bytes(blob[:boundary])
        with pytest.raises(AudioDecodeError, match="truncated"):
            load_audio(cut, RATE)


def test_prepare_and_training_apply_the_same_check(tmp_path):
    """``prepare`` (folder) keeps every valid shape and leaves out only the truncated file; the clips it keeps
    then decode for training, so nothing it accepted is refused later."""
    plain = encode(tmp_path / "plain.mp3")
    root = tmp_path / "data"
    (root / "audio").mkdir(parents=True)
    rows = [["path", "labels"]]
    for i, shape in enumerate(sorted(SHAPES) * 3):
        (root / "audio" / f"c{i}.mp3").write_bytes(SHAPES[shape](plain))
        rows.append([f"audio/c{i}.mp3", "ab"[i % 2]])
    (root / "audio" / "cut.mp3").write_bytes(plain[: len(plain) // 2])
    rows.append(["audio/cut.mp3", "a"])
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    manifest = pipeline.prepare("folder", root, {"max_bad_fraction": 0.2}, progress=False)
    assert len(manifest.clips) == 12
    with open(root / "excluded.csv", newline="") as fh:
        (excluded,) = list(csv.DictReader(fh))
    assert excluded["file"] == "audio/cut.mp3" and excluded["reason"] == "truncated audio"
    for clip in manifest.clips:
        assert abs(len(load_audio(manifest.audio_file(clip), 16000)) - 3 * 16000) < 1200
