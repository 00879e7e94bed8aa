"""Audio decoding and resampling: a file to mono float32 samples at a rate (the front end is
:mod:`eastmir.frontend`).

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, … at any
rate and channel count), channels are averaged, and resampling is soxr's
(the maintained SoX resampler, "HQ" quality). :data:`DECODER` names this
chain; every store key that holds decoded audio includes it, so changing it
never reuses old entries.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from eastmir.frontend import FrontendConfig, hz_to_mel, mel_to_hz
from eastmir.mpeg import StreamLayout, audio_stream, stream_layout

DECODER = f"soundfile {sf.__libsndfile_version__}, channel mean, soxr {soxr.__version__} HQ"


class AudioDecodeError(RuntimeError):  # not an EastmirError: audio imports nothing of ours (but mpeg)
    """An audio file could not be read, or holds no samples. The message names the file; ``kind`` is
    the problem in a few words (``undecodable audio``, ``truncated audio``, ``zero-length audio``, …)."""

    def __init__(self, message: str, kind: str = "undecodable audio") -> None:
        super().__init__(message)
        self.kind = kind


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``audio (samples,)`` from ``orig_sr`` to ``target_sr`` with soxr (HQ), float32."""
    if orig_sr == target_sr:
        return audio
    return soxr.resample(audio, int(orig_sr), int(target_sr), quality="HQ").astype(np.float32, copy=False)


class AudioQualityWarning(UserWarning):
    """Audio that decodes but is suspect (digital silence, heavy clipping): kept, and named once."""


LOWEST_RATE, HIGHEST_RATE = 1000, 768_000  # sample rates outside this range are a broken header, not audio
CLIPPED_FRACTION = 0.01  # more than 1 % of samples at full scale: clipped
TRUNCATED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _libsndfile_reason(message: str, path: Path) -> str:
    """libsndfile's reason without the file name; its MP3 reader calls an unrecognised file 'not a regular file'."""
    reason = message.replace(str(path), "").strip()
    while (shorter := re.sub(r"^Error( opening '.*?')?\s*:\s*", "", reason)) != reason:
        reason = shorter
    reason = reason.strip(" .")
    if "not a regular file" in reason:
        return "Format not recognised"
    return reason


def _decode(path: Path) -> tuple[np.ndarray, int, int, str, StreamLayout | None]:
    """``(audio (samples, channels), sample rate, frames the header declares, libsndfile's log, MPEG layout)``.

    An MPEG file (MP3) is handed to libsndfile without its tags (:mod:`eastmir.mpeg`): it estimates a
    length from the file size when no Xing/VBRI header gives one, and stops decoding there.
    """
    layout = None
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:3] == b"ID3" or (len(head) == 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        blob = path.read_bytes()
        layout = stream_layout(blob)
    source = io.BytesIO(audio_stream(blob, layout)) if layout is not None else str(path)
    with sf.SoundFile(source) as fh:
        declared, rate, log = fh.frames, fh.samplerate, fh.extra_info
        return fh.read(dtype="float32", always_2d=True), rate, declared, log, layout


def _check_mpeg(path: Path, layout: StreamLayout, decoded: int) -> None:
    """Truncation and short decoding of an MPEG file, from its frames (not libsndfile's size estimate)."""
    if layout.cut_short is not None:
        have, need = layout.cut_short
        raise AudioDecodeError(
            f"{path}: truncated (its last MPEG frame has {have} of its {need} bytes); download or copy it again",
            "truncated audio",
        )
    if decoded < layout.samples - max(4 * 1152, layout.samples // 100):  # decoders drop delay and padding
        raise AudioDecodeError(
            f"{path}: libsndfile decodes {decoded} of the {layout.samples} samples its MPEG frames hold (a VBR "
            "file without a Xing/VBRI length header); re-encode it, e.g. with LAME, which writes one"
        )


def load_audio(path: str | Path, sample_rate: int, frontend: FrontendConfig | None = None) -> np.ndarray:
    """Decode ``path`` to mono float32 ``(samples,)`` at ``sample_rate`` (:func:`read_audio`, then soxr).

    ``frontend``: the log-mel front end the audio is for; a recording whose own rate holds less than the front
    end's ``fmax`` gets an :class:`AudioQualityWarning` saying how many mel bands are empty for it."""
    audio, sr = read_audio(path)
    note = band_limit_note(path, sr, frontend) if frontend is not None else None
    if note:
        warnings.warn(note, AudioQualityWarning, stacklevel=2)
    return resample(audio, sr, sample_rate)


def band_limit_note(path: str | Path, native_rate: int, frontend: FrontendConfig) -> str | None:
    """Why a recording at ``native_rate`` leaves some of ``frontend``'s mel bands empty, or ``None`` when it
    reaches the front end's ``fmax`` (a band whose lower edge lies above the recording's Nyquist frequency holds
    nothing but the resampler's noise floor)."""
    nyquist = native_rate / 2
    if nyquist >= frontend.fmax:
        return None
    scale = frontend.mel_scale
    points = np.linspace(hz_to_mel(frontend.fmin, scale), hz_to_mel(frontend.fmax, scale), frontend.n_mels + 2)
    empty = int(np.sum(mel_to_hz(points[:-2], scale) >= nyquist))
    return (
        f"{path}: recorded at {native_rate} Hz, so it holds nothing above {nyquist:g} Hz, but the front end's mel "
        f"bands reach {frontend.fmax:g} Hz: {empty} of its {frontend.n_mels} bands are empty for this recording "
        "(resampling does not bring them back), which the model never saw in training"
    )


def preprocessing(sample_rate: int) -> str:
    """In words, the exact steps from a file to a model's ``waveform (samples,)`` input at ``sample_rate``, which
    :func:`load_audio` performs in one call (model cards print this)."""
    return (
        f"`eastmir.audio.load_audio(path, {sample_rate})` does it in one call: decode with {DECODER}. An MP3's tags "
        "(ID3v2, ID3v1, APE) are removed before libsndfile's mpg123 decodes it, which trims the encoder delay and "
        "padding its LAME header states; channels are averaged to mono; soxr resamples to "
        f"{sample_rate} Hz at its HQ quality; float32 samples in [-1, 1]. Another decoder (other delay "
        "handling) or resampler shifts or filters the audio and changes the probabilities"
    )


def read_audio(path: str | Path, warn: bool = True) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 ``(samples,)`` at its own rate: ``(audio, sample rate)``.

    The one decode check, which ``prepare``, ``features``, ``extract`` and
    ``predict`` all apply. Raises :class:`AudioDecodeError` naming the file and
    the problem when it is missing, empty (0 bytes), not decodable, truncated
    (fewer samples than its header declares: libsndfile would return the part
    that is there; an MP3 is judged by its frames, not by libsndfile's
    size-based estimate, see :mod:`eastmir.mpeg`), declares an implausible
    sample rate, holds no samples, or holds NaN or infinite samples. Digital
    silence and heavy clipping are kept, with an :class:`AudioQualityWarning`
    naming the file when ``warn``.
    """
    path = Path(path)
    _check_file(path)
    audio, sr = _decode_checked(path)
    if audio.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples", "zero-length audio")
    audio = audio.mean(axis=1)
    if not np.isfinite(audio).all():
        raise AudioDecodeError(f"{path}: the decoded audio contains NaN or infinite samples", "non-finite samples")
    if warn:
        _warn_quality(path, audio)
    return audio, sr


def _check_file(path: Path) -> None:
    """Stop before decoding when ``path`` is no readable, non-empty file."""
    if not path.is_file():
        if path.is_dir():
            raise AudioDecodeError(f"{path}: a folder, not an audio file", "not a file")
        if path.exists():
            raise AudioDecodeError(f"{path}: not a regular file (a pipe, socket or device); copy the audio into a file")
        raise AudioDecodeError(f"{path}: audio file not found (is the dataset root right?)", "missing file")
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(f"{path}: permission denied; make the file readable (chmod +r)", "unreadable file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(
            f"{path}: empty file (0 bytes); download or copy it again, or drop it from the manifest",
            "zero-length audio",
        )


def _decode_checked(path: Path) -> tuple[np.ndarray, int]:
    """``(samples, channels)`` float32 and the rate of ``path``, refused when undecodable, truncated or at an
    implausible rate."""
    try:
        audio, sr, declared, log, layout = _decode(path)
    except Exception as err:  # libsndfile raises several types, with messages that can mislead (MP3: "not a pipe")
        detail = _libsndfile_reason(str(err), path) or type(err).__name__
        raise AudioDecodeError(
            f"{path}: not decodable as audio (libsndfile: {detail}); re-encode the file or drop it from the manifest"
        ) from err
    short = TRUNCATED_DATA.search(log)
    if short and int(short.group(2)) < int(short.group(1)):
        raise AudioDecodeError(
            f"{path}: truncated (its header declares {short.group(1)} bytes of audio, the file holds "
            f"{short.group(2)}); download or copy it again",
            "truncated audio",
        )
    exact = layout is None or layout.declared_frames is not None  # else libsndfile's figure is an estimate
    if exact and declared > 0 and audio.shape[0] < declared - max(2048, declared // 100):
        raise AudioDecodeError(
            f"{path}: truncated (its header declares {declared} samples, {audio.shape[0]} decode); "
            "download or copy it again",
            "truncated audio",
        )
    if layout is not None:
        _check_mpeg(path, layout, audio.shape[0])
    if not LOWEST_RATE <= sr <= HIGHEST_RATE:
        raise AudioDecodeError(
            f"{path}: its header declares a sample rate of {sr} Hz (expected {LOWEST_RATE}-{HIGHEST_RATE} Hz); "
            "the header is wrong: re-encode the file with its true rate"
        )
    return audio, sr


def _warn_quality(path: Path, audio: np.ndarray) -> None:
    """An :class:`AudioQualityWarning` for digital silence, samples beyond full scale, or clipping."""
    peak = float(np.abs(audio).max())
    if peak == 0.0:
        warnings.warn(f"{path}: digital silence (every sample is 0); kept", AudioQualityWarning, stacklevel=3)
    elif peak > 1.001:  # floating-point audio beyond full scale is not clipped: it is out of range
        warnings.warn(
            f"{path}: samples reach ±{peak:.3g}, beyond full scale (±1); kept as they are",
            AudioQualityWarning,
            stacklevel=3,
        )
    else:
        clipped = float(np.mean(np.abs(audio) >= 0.999))
        if clipped > CLIPPED_FRACTION:
            warnings.warn(
                f"{path}: clipped ({clipped:.0%} of samples at full scale); kept", AudioQualityWarning, stacklevel=3
            )
