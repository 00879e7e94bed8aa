"""aiSFX (Ma & Lerch, ISMIR 2022): a sound-effects CNN used as a teacher.

Our own PyTorch port of the embedding network and its Essentia input
pipeline; the weights are read from the PyPI wheel ``aisfx==0.1.2`` (MIT
code, CC-BY 4.0 weights), which is fetched with ``pip download --no-deps``
and never installed or imported.

Input pipeline (as the published model's): 44.1 kHz mono; frames of 2048 samples
(symmetric Hann, not normalised), hop 1024, the first frame centred on
sample 0 (zero padding) and frames emitted while their start lies inside
the signal; power spectrum; 96 HTK mel bands 0–22 050 Hz with triangles on
the mel axis, each band normalised to unit sum; ``log10(1e4·x + 1) /
9.457799``. Blocks of 100 frames (≈2.32 s) with a hop of 50 frames
(≈1.16 s), a trailing partial block dropped (a clip shorter than one block
gives one zero-padded block). A block enters the network as
``(1, 100 frames, 96 mels)``; its embedding is the mean over frequency,
then the max over time: 512 values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eastmir.fetch import sha256_of
from eastmir.folding import optimise_for_inference
from eastmir.frontend import mel_filterbank
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.weights import WheelWeights, fetch_wheel_member

AISFX_WEIGHTS = WheelWeights(
    package="aisfx",
    version="0.1.2",
    wheel_sha256="bfe219950715af179e9a1653e7117cc1852baef267cd6596c42cad74afe1d194",
    files=(("aisfx/models/checkpoint.pth", "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"),),
)
SAMPLE_RATE = 44100
FRAME, HOP, N_MELS = 2048, 1024, 96
BLOCK, BLOCK_HOP = 100, 50
LOG_MAX = 9.457798957824707


class ConvBlock(nn.Module):
    """3×3 conv (no bias) → BN → ReLU → 3×3 conv → BN → ReLU → max-pool."""

    def __init__(self, c_in: int, c_out: int, pool: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, self.pool) if self.pool > 1 else x


class AisfxEmbeddingNet(nn.Module):
    """Blocks ``(batch, 1, 100 frames, 96 mels)`` → embeddings ``(batch, 512)``; 4 686 144 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = ConvBlock(1, 64, 2)
        self.conv_block2 = ConvBlock(64, 128, 2)
        self.conv_block3 = ConvBlock(128, 256, 2)
        self.conv_block4 = ConvBlock(256, 512, 1)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        x = self.conv_block4(self.conv_block3(self.conv_block2(self.conv_block1(blocks))))
        return x.mean(dim=3).amax(dim=2)


class AisfxFrontend(nn.Module):
    """Waveform ``(batch, samples)`` at 44.1 kHz → log-mel ``(batch, frames, 96)``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(FRAME, periodic=False), persistent=False)
        fb = mel_filterbank(
            FRAME, SAMPLE_RATE, N_MELS, 0.0, SAMPLE_RATE / 2, scale="htk", triangles="mel", norm="unit_sum"
        )
        self.register_buffer("filterbank", fb, persistent=False)

    @staticmethod
    def n_frames(n_samples: int) -> int:
        return -(-(n_samples + FRAME // 2) // HOP)  # ceil: starts -1024, 0, 1024, ... < n_samples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        n = waveform.shape[-1]
        frames = self.n_frames(n)
        right = (frames - 1) * HOP + FRAME - FRAME // 2 - n
        padded = F.pad(waveform, (FRAME // 2, right))
        framed = padded.unfold(-1, FRAME, HOP) * self.window  # (batch, frames, 2048)
        power = torch.fft.rfft(framed).abs().square()
        mel = power @ self.filterbank
        return torch.log10(1e4 * mel + 1.0) / LOG_MAX


def to_blocks(logmel: torch.Tensor) -> torch.Tensor:
    """``(batch, frames, mels)`` → ``(batch, blocks, 100, mels)``; partial trailing block dropped."""
    if logmel.shape[1] < BLOCK:
        logmel = F.pad(logmel, (0, 0, 0, BLOCK - logmel.shape[1]))
    return logmel.unfold(1, BLOCK, BLOCK_HOP).transpose(2, 3)


def load_aisfx_state(path) -> dict[str, torch.Tensor]:
    """The embedding network's ``state_dict`` from the package checkpoint.

    The checkpoint is a pickled ``(state_dict, dataset_dict)``; it is read
    with ``weights_only=True`` after allow-listing exactly the numpy types it
    contains, keeping the safety check on.
    """
    import numpy.dtypes

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, numpy.dtypes.Int64DType]
    with torch.serialization.safe_globals(allowed):
        state, _datasets = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "embedding_net."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@TEACHERS.register("aisfx")
class AisfxTeacher(Teacher):
    name = "aisfx"
    version = "0.1.2"
    revision = 3  # 2: BatchNorm folded, channels-last (within 3e-6 of 1); 3: one clip per call on one thread
    sample_rate = SAMPLE_RATE
    frame_seconds = BLOCK_HOP * HOP / SAMPLE_RATE
    dim = 512
    licence = "MIT code, CC BY 4.0 weights"
    source = "PyPI wheel aisfx==0.1.2 (sha256 bfe219950715…), aisfx/models/checkpoint.pth"
    weights_specs = (AISFX_WEIGHTS,)
    dims = "512"

    def __init__(self, weights_dir: Path | None = None, block_batch: int = 32) -> None:
        """``weights_dir``: a folder holding ``checkpoint.pth`` or the ``aisfx-0.1.2`` wheel (offline
        use); by default the wheel is fetched once into ``$EASTMIR_CACHE``. ``block_batch``: blocks
        per network call (memory; another value can change the last bits, so it keys the store)."""
        super().__init__()
        self.frontend = AisfxFrontend()
        self.net = AisfxEmbeddingNet()
        path = fetch_wheel_member(AISFX_WEIGHTS, weights_dir=weights_dir)
        self.weights_sha256 = sha256_of(path)
        self.net.load_state_dict(load_aisfx_state(path), strict=True)
        self.parameter_count = sum(p.numel() for p in self.net.parameters())  # as published, before folding
        self.net = optimise_for_inference(self.net, torch.zeros(2, 1, BLOCK, N_MELS))  # 1.4× faster, same outputs
        self.block_batch = block_batch
        self.eval()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": self.weights_sha256, "block_batch": self.block_batch}

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        blocks = to_blocks(self.frontend(waveforms))  # (batch, blocks, 100, 96)
        n, b = blocks.shape[:2]
        flat = blocks.reshape(n * b, 1, BLOCK, N_MELS)
        out = torch.cat([self.net(chunk) for chunk in flat.split(self.block_batch)])
        return out.reshape(n, b, self.dim)
