"""The log-mel front end (torch): mel scales, filterbanks, the STFT power spectrum and the normalised log-mel
of :class:`FrontendConfig`.

No torchaudio: it is not available for every torch build we support, and the
three pieces needed here (STFT, a mel filterbank, a log) are a few lines of
torch; the filterbank is checked by tests against its defining properties.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


def hz_to_mel(freq: np.ndarray | torch.Tensor | float, scale: str = "htk") -> np.ndarray | torch.Tensor:
    """Hertz → mel, HTK (``2595 log10(1 + f/700)``) or Slaney (linear below 1 kHz); a tensor stays a tensor
    (its dtype and device), anything else becomes a float64 array."""
    lib, freq = _array_library(freq)
    if scale == "htk":
        return 2595.0 * lib.log10(1.0 + freq / 700.0)
    if scale == "slaney":
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        lin = freq / f_sp
        log = min_log_mel + lib.log(lib.clip(freq, 1e-10, None) / min_log_hz) / logstep
        return lib.where(freq >= min_log_hz, log, lin)
    raise ValueError(f"unknown mel scale {scale!r}; valid: htk, slaney")


def mel_to_hz(mel: np.ndarray | torch.Tensor | float, scale: str = "htk") -> np.ndarray | torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    lib, mel = _array_library(mel)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return lib.where(mel >= min_log_mel, min_log_hz * lib.exp(logstep * (mel - min_log_mel)), f_sp * mel)
    raise ValueError(f"unknown mel scale {scale!r}; valid: htk, slaney")


def _array_library(x):
    """``(torch, x)`` for a tensor, else ``(numpy, x as a float64 array)``: the mel formulas run on either."""
    if isinstance(x, torch.Tensor):
        return torch, x
    return np, np.asarray(x, dtype=np.float64)


def mel_filterbank(
    n_fft: int,
    sample_rate: int,
    n_mels: int,
    fmin: float,
    fmax: float,
    scale: str = "htk",
    triangles: str = "mel",
    norm: str | None = None,
) -> torch.Tensor:
    """Triangular mel filterbank, shape ``(n_fft // 2 + 1, n_mels)``.

    ``n_mels + 2`` edges are spaced evenly on the mel ``scale`` between
    ``fmin`` and ``fmax``. ``triangles="mel"`` draws the triangles on the mel
    axis (Kaldi, Essentia's ``warping``), ``"hz"`` on the linear axis
    (librosa). ``norm``: ``None``, ``"unit_sum"`` (each band's weights sum to
    one, Essentia) or ``"slaney"`` (area normalisation, librosa).
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel range {fmin}-{fmax} Hz must lie within 0-{sample_rate / 2} Hz")
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2)
    if triangles == "mel":
        axis, edges = hz_to_mel(freqs, scale), edges_mel
    elif triangles == "hz":
        axis, edges = freqs, mel_to_hz(edges_mel, scale)
    else:
        raise ValueError(f"unknown triangles {triangles!r}; valid: mel, hz")
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (axis[None, :] - lower) / (centre - lower)
    falling = (upper - axis[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    if norm == "unit_sum":
        weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    elif norm == "slaney":
        hz_edges = mel_to_hz(edges_mel, scale)
        weights = weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    elif norm is not None:
        raise ValueError(f"unknown filterbank norm {norm!r}; valid: None, unit_sum, slaney")
    return torch.from_numpy(weights.T.astype(np.float32))


def mel_filterbanks(
    n_fft: int, sample_rate: int, n_mels: int, fmin: torch.Tensor, fmax: torch.Tensor, scale: str = "htk"
) -> torch.Tensor:
    """One filterbank per clip, ``(batch, n_fft // 2 + 1, n_mels)`` float32, for ranges ``fmin (batch,)`` and
    ``fmax (batch,)`` in Hz: for each pair what :func:`mel_filterbank` gives with its defaults (triangles on the
    mel axis, peak 1, no normalisation), built at once on the ranges' device in float64 (the per-clip
    frequency jitter of a training batch, without a loop over its clips)."""
    nyquist = sample_rate / 2
    if bool(((fmin < 0) | (fmin >= fmax) | (fmax > nyquist)).any()):
        raise ValueError(f"every mel range must lie within 0-{nyquist} Hz with fmin < fmax")
    fmin, fmax = fmin.double(), fmax.double()
    freqs = torch.linspace(0.0, nyquist, n_fft // 2 + 1, dtype=torch.float64, device=fmin.device)
    axis = hz_to_mel(freqs, scale)  # (freqs,)
    low, high = hz_to_mel(fmin, scale)[:, None], hz_to_mel(fmax, scale)[:, None]
    steps = torch.arange(n_mels + 2, dtype=torch.float64, device=fmin.device)
    edges = low + (high - low) * steps / (n_mels + 1)  # (batch, n_mels + 2), as numpy.linspace spaces them
    edges[:, -1:] = high  # (numpy.linspace ends exactly on the stop)
    lower, centre, upper = edges[:, :-2, None], edges[:, 1:-1, None], edges[:, 2:, None]
    rising = (axis - lower) / (centre - lower)
    falling = (upper - axis) / (upper - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)  # (batch, n_mels, freqs)
    return weights.transpose(1, 2).float()


ADDED_DEFAULTS = {"preemphasis": 0.0, "window": "periodic", "pad_mode": "constant"}  # fields added on 2026-11-30


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings (the recipes' values: docs/method.md). ``(log(mel + eps) + shift) / scale``.

    ``preemphasis``, ``window`` and ``pad_mode`` choose between two front ends: the defaults are eastmir's
    first one (no pre-emphasis, periodic Hann, zero padding); the paper recipes set the authors'
    (``preemphasis: 0.97`` as a valid two-tap convolution, one sample shorter; a symmetric Hann; reflect
    padding), which their golden arrays check (``tests/test_golden.py``). Both build the filterbank as Kaldi
    does: triangles on the mel axis (``mel_scale: htk``; a scale factor such as Kaldi's 1127 vs 2595/ln 10
    cancels), peak 1, evaluated at ``k · sample_rate / n_fft``, the Nyquist bin at weight 0 when ``fmax`` is
    the Nyquist frequency.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    n_mels: int = 96
    fmin: float = 0.0
    fmax: float = 8000.0
    mel_scale: str = "htk"
    log_eps: float = 1e-5
    norm_shift: float = 3.7
    norm_scale: float = 3.1
    preemphasis: float = 0.0  # y[n] = x[n+1] - p·x[n] (the authors': 0.97); 0: none
    window: str = "periodic"  # Hann: periodic (torch's default) or symmetric (the authors')
    pad_mode: str = "constant"  # the centred STFT's padding: constant (zeros) or reflect (the authors')

    def __post_init__(self) -> None:
        if min(self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels) < 1:
            raise ValueError("sample_rate, n_fft, win_length, hop_length and n_mels must be positive")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} must not exceed n_fft {self.n_fft}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate / 2, got {self.fmin}-{self.fmax} Hz at {self.sample_rate} Hz"
            )
        if self.mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale must be htk or slaney, got {self.mel_scale!r}")
        if self.log_eps <= 0 or self.norm_scale == 0:
            raise ValueError("log_eps must be positive and norm_scale non-zero")
        if not 0 <= self.preemphasis < 1:
            raise ValueError(f"preemphasis must be in [0, 1), got {self.preemphasis}")
        if self.window not in ("periodic", "symmetric"):
            raise ValueError(f"window must be periodic or symmetric, got {self.window!r}")
        if self.pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be constant or reflect, got {self.pad_mode!r}")

    @property
    def silence(self) -> float:
        """The normalised log-mel value of silence: what padding a short clip adds."""
        return (math.log(self.log_eps) + self.norm_shift) / self.norm_scale

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` (centred STFT; pre-emphasis drops one sample)."""
        return (n_samples - self.dropped) // self.hop_length + 1

    def n_samples(self, n_frames: int) -> int:
        """The fewest samples that give ``n_frames`` frames."""
        return (n_frames - 1) * self.hop_length + self.dropped

    @property
    def dropped(self) -> int:
        """Samples the pre-emphasis convolution drops (1 with pre-emphasis, else 0)."""
        return 1 if self.preemphasis else 0

    def identity(self) -> dict:
        """The settings that key the store's log-mel entries: every field, except those added later that still
        hold the value that computes what the front end computed before they existed (so entries made before
        stay valid)."""
        return {k: v for k, v in asdict(self).items() if not (k in ADDED_DEFAULTS and v == ADDED_DEFAULTS[k])}

    def cache_key(self) -> str:
        """Short hash of every setting: the log-mel cache folder name."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _factor(n: int) -> tuple[int, int]:
    """``n = a · b`` with ``a`` the largest divisor of ``n`` not above its square root."""
    a = math.isqrt(n)
    while n % a:
        a -= 1
    return a, n // a


class MatmulPowerSpectrum(nn.Module):
    """The centred STFT's power ``|X|²`` as ``torch.stft`` computes it, by matrix products: padded waveform
    ``(batch, samples + n_fft)`` → ``(batch, n_fft // 2 + 1, frames)``.

    For ONNX export: ONNX Runtime's ``STFT`` operator took 8.6 ms for 10 s at 16 kHz (n_fft 1024) on one
    thread, 43 % of an exported Mobile FCN. Here each frame is cut from the waveform by slicing (``hop``-long
    blocks side by side), windowed, and transformed by a two-stage Cooley–Tukey DFT, ``n_fft = n1 · n2``
    (32 · 32 for 1024): a length-``n1`` DFT as one product, the twiddle factors, a length-``n2`` DFT of the
    non-negative frequencies as another; 68 M multiply-accumulates for those 10 s, 3.7 ms with the mel
    product (relative difference to ``torch.stft`` ≈ 5e-7).
    """

    def __init__(self, n_fft: int, hop_length: int, window: torch.Tensor) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop_length
        self.n1, self.n2 = _factor(n_fft)
        self.kept = self.n2 // 2 + 1  # second-stage frequencies k2 that reach n_fft // 2
        full = torch.zeros(n_fft, dtype=torch.float64)
        offset = (n_fft - len(window)) // 2  # torch.stft centres a shorter window in the frame
        full[offset : offset + len(window)] = window.double()
        k1, n2 = torch.arange(self.n1, dtype=torch.float64), torch.arange(self.n2, dtype=torch.float64)
        first = 2 * math.pi * torch.outer(k1, k1) / self.n1  # (k1, n1)
        twiddle = 2 * math.pi * torch.outer(k1, n2) / n_fft  # (k1, n2)
        second = 2 * math.pi * torch.outer(n2, torch.arange(self.kept, dtype=torch.float64)) / self.n2  # (n2, k2)
        c, s = torch.cos(second), torch.sin(second)
        buffers = {
            "window": full.reshape(self.n1, self.n2),
            "first": torch.cat([torch.cos(first), -torch.sin(first)]),  # real and imaginary rows (2 n1, n1)
            "twiddle_cos": torch.cos(twiddle),
            "twiddle_sin": torch.sin(twiddle),
            "second": torch.cat([torch.cat([c, -s], 1), torch.cat([s, c], 1)]),  # (2 n2, 2 kept)
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)

    def forward(self, padded: torch.Tensor) -> torch.Tensor:
        batch, n, hop = padded.shape[0], self.n_fft, self.hop
        frames = (padded.shape[-1] - n) // hop + 1
        blocks_per_frame = -(-n // hop)
        padded = nn.functional.pad(padded, (0, blocks_per_frame * hop - n))
        blocks = padded[:, : (frames + blocks_per_frame - 1) * hop].reshape(batch, -1, hop)
        cut = torch.cat([blocks[:, j : j + frames] for j in range(blocks_per_frame)], -1)[..., :n]
        x = cut.reshape(batch, frames, self.n1, self.n2) * self.window  # sample n = n2 · row + column
        a = torch.matmul(self.first, x)  # (batch, frames, 2 n1, n2): the first stage, real and imaginary
        re, im = a[:, :, : self.n1], a[:, :, self.n1 :]
        b_re = re * self.twiddle_cos + im * self.twiddle_sin
        b_im = im * self.twiddle_cos - re * self.twiddle_sin
        y = torch.matmul(torch.cat([b_re, b_im], -1), self.second)  # (batch, frames, k1, 2 kept)
        power = y[..., : self.kept].square() + y[..., self.kept :].square()  # X[k1 + n1 · k2]
        power = power.transpose(-1, -2).reshape(batch, frames, self.n1 * self.kept)[..., : n // 2 + 1]
        return power.transpose(1, 2)


class LogMelFrontend(nn.Module):
    """Waveform ``(batch, samples)`` → normalised log-mel ``(batch, mels, frames)``.

    The window and filterbank are non-persistent buffers: they are rebuilt
    from the config and never stored in checkpoints. :meth:`for_onnx` switches
    the STFT to :class:`MatmulPowerSpectrum` (the same values up to float
    rounding, and fast in ONNX Runtime).
    """

    def __init__(self, config: FrontendConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        window = torch.hann_window(c.win_length, periodic=c.window == "periodic")
        self.register_buffer("window", window, persistent=False)
        fb = mel_filterbank(c.n_fft, c.sample_rate, c.n_mels, c.fmin, c.fmax, scale=c.mel_scale)
        self.register_buffer("filterbank", fb, persistent=False)
        self.matmul_spectrum: MatmulPowerSpectrum | None = None

    def for_onnx(self) -> LogMelFrontend:
        """Compute the spectrum by matrix products from now on (:class:`MatmulPowerSpectrum`); returns self."""
        c = self.config
        self.matmul_spectrum = MatmulPowerSpectrum(c.n_fft, c.hop_length, self.window).to(self.window.device)
        return self

    def forward(
        self,
        waveform: torch.Tensor,
        fmin: float | torch.Tensor | None = None,
        fmax: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``fmin``/``fmax`` (Hz) override the filterbank's range for this call (frequency jitter): one value for
        the batch, or one per clip ``(batch,)`` (each clip through its own filterbank, in one batched product)."""
        c = self.config
        filterbank = self.filterbank  # (freqs, mels), or (1 or batch, freqs, mels) for ranges of this call
        if fmin is not None or fmax is not None:
            device = waveform.device
            lo = torch.as_tensor(c.fmin if fmin is None else fmin, dtype=torch.float64, device=device).reshape(-1)
            hi = torch.as_tensor(c.fmax if fmax is None else fmax, dtype=torch.float64, device=device).reshape(-1)
            lo, hi = torch.broadcast_tensors(lo, hi)
            filterbank = mel_filterbanks(c.n_fft, c.sample_rate, c.n_mels, lo, hi, scale=c.mel_scale)
        if c.preemphasis:  # a valid two-tap convolution, as the authors': one sample shorter, nothing carried over
            waveform = waveform[..., 1:] - c.preemphasis * waveform[..., :-1]
        half = c.n_fft // 2  # centred frames: the STFT's own padding (torch.stft(center=True) pads just so)
        return self.padded_frames(nn.functional.pad(waveform[:, None], (half, half), mode=c.pad_mode)[:, 0], filterbank)

    def padded_frames(self, padded: torch.Tensor, filterbank: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-emphasised samples already padded for centred frames ``(batch, samples)`` → normalised log-mel
        ``(batch, mels, frames)``, one frame every ``hop_length`` samples from the first (what :meth:`forward`
        computes after padding; a stream computes its frames piece by piece with it)."""
        c = self.config
        if self.matmul_spectrum is not None:  # products only, as ONNX Runtime and the phone runtimes run them fast
            power = self.matmul_spectrum(padded)
        else:
            spec = torch.stft(
                padded,
                n_fft=c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window,
                center=False,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        bank = self.filterbank if filterbank is None else filterbank
        mel = torch.matmul(bank.transpose(-1, -2), power)  # (batch, mels, frames)
        return (torch.log(mel + c.log_eps) + c.norm_shift) / c.norm_scale
