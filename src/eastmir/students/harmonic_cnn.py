"""Harmonic CNN (Won et al., ICASSP 2020, "Data-driven harmonic filters for
audio representation learning"), the second student of the
embedding-compression paper.

Front end (learnable): a power STFT (n_fft 513, hop 256, Hann) is filtered
by triangular band-pass filters centred on ``n_harmonic`` = 6 harmonics of
``level`` = 128 fundamental frequencies (semitone scale 2, from C1 to
``sample_rate / (2·n_harmonic)``), with bandwidth
``(0.1079·f + 24.7) / Q`` and a learnable ``Q`` (``learn_bw="only_Q"``); then
dB and a BN over the 6 harmonic channels → ``(batch, 6, 128, frames)``.

Back end: conv block (3×3 conv, BN, ReLU, max-pool) 6→c, three residual
blocks with max-pool (c), conv block c→2c, two residual blocks with
(2, 3) max-pool (2c); global max over time; dense 2c → 2c, BN, ReLU,
dropout; classifier. c = 128.

Backbone parameters (front end included, classifier excluded): **3 618 701**
(the paper's 3.6 M, +0.5 %).

It reads the **waveform** (``input_key = "waveform"``). Stages (averaged
over frequency): after blocks 3 (c, 8 STFT frames per frame), 5 (2c, 32)
and 7 (2c, 288); an STFT frame is 256 samples.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eastmir.frontend import FrontendConfig
from eastmir.inputs import InputKind
from eastmir.numbers import Dropout
from eastmir.registry import STUDENTS
from eastmir.students.base import Student, StudentOutput


def _hz_to_midi(f: float) -> float:
    return 69 + 12 * math.log2(f / 440.0)


def _midi_to_hz(m: np.ndarray) -> np.ndarray:
    return 440.0 * 2 ** ((m - 69) / 12)


class HarmonicSTFT(nn.Module):
    """Waveform ``(batch, samples)`` → harmonic spectrogram in dB ``(batch, n_harmonic, level, frames)``."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 513,
        hop_length: int = 256,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        bw_q: float = 1.0,
        learn_bw: bool = True,
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.n_harmonic = n_fft, hop_length, n_harmonic
        low, high = 24.0, _hz_to_midi(sample_rate / (2 * n_harmonic))  # C1 … Nyquist / n_harmonic
        self.level = int((high - low) * semitone_scale)
        f0 = _midi_to_hz(np.linspace(low, high, self.level + 1)[:-1])
        centres = np.concatenate([f0 * (h + 1) for h in range(n_harmonic)])
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32), persistent=False)
        self.register_buffer("fft_freqs", torch.linspace(0, sample_rate // 2, n_fft // 2 + 1), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        q = torch.tensor([bw_q], dtype=torch.float32)
        self.bw_q = nn.Parameter(q) if learn_bw else None
        if not learn_bw:
            self.register_buffer("fixed_q", q, persistent=False)

    def filterbank(self) -> torch.Tensor:
        q = self.bw_q if self.bw_q is not None else self.fixed_q
        bw = (0.1079 * self.centres + 24.7) / q  # (bands,)
        f = self.fft_freqs[:, None]
        up = 2 * (f - self.centres) / bw + 1
        down = -2 * (f - self.centres) / bw + 1
        return torch.clamp(torch.minimum(up, down), min=0.0)  # (freqs, bands)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveform, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        bands = torch.einsum("bft,fk->bkt", power, self.filterbank())
        b, _, t = bands.shape
        return 10 * torch.log10(bands.clamp_min(1e-10)).view(b, self.n_harmonic, self.level, t)


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, pool) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(pool)
        )


class ResidualPoolBlock(nn.Module):
    def __init__(self, c: int, pool) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn_1 = nn.BatchNorm2d(c)
        self.conv_2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn_2 = nn.BatchNorm2d(c)
        self.pool = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_2(self.conv_2(F.relu(self.bn_1(self.conv_1(x)))))
        return self.pool(F.relu(x + out))


STFT_HOP = 256  # the harmonic STFT's hop (samples)


@STUDENTS.register("harmonic_cnn")
class HarmonicCNN(Student):
    """Waveform ``(batch, samples)`` at ``sample_rate`` → :class:`StudentOutput`."""

    input_key = InputKind.WAVEFORM
    complexity_frontend = None
    stage_hops = (8, 32, 288)
    min_frames = 288 * 256  # samples (it reads the waveform): the time pooling of 288 STFT frames of hop 256
    STAGE_AFTER = (2, 4, 6)

    def __init__(
        self,
        num_classes: int,
        channels: int = 128,
        sample_rate: int = 16000,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        learn_bw: bool = True,
        dropout: Dropout = 0.5,
    ) -> None:
        super().__init__()
        c = channels
        self.stage_dims = (c, 2 * c, 2 * c)
        self.sample_rate = sample_rate
        self.hstft = HarmonicSTFT(sample_rate, n_harmonic=n_harmonic, semitone_scale=semitone_scale, learn_bw=learn_bw)
        self.hstft_bn = nn.BatchNorm2d(n_harmonic)
        self.blocks = nn.ModuleList(
            [
                ConvBlock(n_harmonic, c, 2),
                ResidualPoolBlock(c, 2),
                ResidualPoolBlock(c, 2),
                ResidualPoolBlock(c, 2),
                ConvBlock(c, 2 * c, 2),
                ResidualPoolBlock(2 * c, (2, 3)),
                ResidualPoolBlock(2 * c, (2, 3)),
            ]
        )
        self.dense = nn.Sequential(nn.Linear(2 * c, 2 * c), nn.BatchNorm1d(2 * c), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(2 * c, num_classes)

    def stage_seconds(self, frontend: FrontendConfig) -> tuple[float, ...]:
        """Its own STFT (hop 256 at ``sample_rate``) sets the stage periods, not the front end's."""
        return tuple(h * STFT_HOP / self.sample_rate for h in self.stage_hops)

    def forward(self, waveform: torch.Tensor) -> StudentOutput:
        if waveform.shape[-1] < self.min_frames and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            raise ValueError(f"harmonic_cnn needs at least {self.min_frames} samples, got {waveform.shape[-1]}")
        x = self.hstft_bn(self.hstft(waveform))
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.STAGE_AFTER:
                stages.append(x.mean(dim=2).transpose(1, 2))
        pooled = x.mean(dim=2).amax(dim=2)
        return StudentOutput(self.head(self.dense(pooled)), stages)
