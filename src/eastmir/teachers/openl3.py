"""OpenL3 (Cramer et al., ICASSP 2019) through ``torchopenl3`` (``pip install 'eastmir[openl3]'``).

``torchopenl3`` is the maintained PyTorch port of OpenL3 (HEAR 2021);
chosen over the ``openl3`` package, which needs TensorFlow. Its weights are
the original Keras weights converted; the project publishes no checksum, so
the sha256 of the first download is recorded and checked from then on.

Configured as in the paper: the music model, mel-256 input, 512-d, windows
of 1 s at 48 kHz with a hop of 0.96 s (the package's framing: the clip is
centred with half a window of zeros in front and zero-padded to whole
hops); the stored embeddings are shifted by ``shift`` (−2.24 by default,
the published normalisation, docs/method.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from eastmir.fetch import sha256_of
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.published import PublishedWeights, load_checkpoint, load_into, locate_weights, require

MODELS = "https://github.com/torchopenl3/torchopenl3-models/raw/master"
SAMPLE_RATE = 48000
HOP_SECONDS = 0.96


def published_weights(input_repr: str, content_type: str, embedding_size: int) -> PublishedWeights:
    name = f"torchopenl3_{input_repr}_{content_type}_{embedding_size}.pth.tar"
    return PublishedWeights(f"{MODELS}/{name}", name, None, "MIT (torchopenl3); OpenL3 weights CC BY 4.0")


@TEACHERS.register("openl3")
class Openl3Teacher(Teacher):
    name = "openl3"
    version = "torchopenl3-1.0.1"
    sample_rate = SAMPLE_RATE
    frame_seconds = HOP_SECONDS
    dim = 512
    licence = "MIT (code), CC BY 4.0 (weights)"
    source = f"pip install 'eastmir[openl3]' (torchopenl3); {published_weights('mel256', 'music', 512).describe}"
    weights_specs = (published_weights("mel256", "music", 512),)
    dims = "512 (or 6144: embedding_size)"

    def __init__(
        self,
        content_type: Literal["music", "env"] = "music",
        input_repr: Literal["mel256", "mel128", "linear"] = "mel256",
        embedding_size: Literal[512, 6144] = 512,
        shift: float = -2.24,
        frame_batch: int = 32,
        weights_file: Path | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        """``shift`` is added to every embedding; ``frame_batch``: 1 s windows per network call (memory only)."""
        super().__init__()
        require("torchopenl3", "openl3", self.name)
        from torchopenl3.models import PytorchOpenl3
        from torchopenl3.utils import preprocess_audio_batch

        self._frames = preprocess_audio_batch
        self.options = {"content_type": content_type, "input_repr": input_repr, "embedding_size": embedding_size}
        self.dim = embedding_size
        self.shift = shift
        self.frame_batch = frame_batch
        spec = published_weights(input_repr, content_type, embedding_size)
        path = locate_weights(spec, self.name, weights_file, weights_dir)
        with warnings.catch_warnings():  # OpenL3's mel-256 basis at n_fft 2048 has empty bands, by design
            warnings.filterwarnings("ignore", "Empty filters detected", UserWarning)
            self.net = PytorchOpenl3(content_type=content_type, input_repr=input_repr, embedding_size=embedding_size)
        load_into(self.net, load_checkpoint(path, self.name), path, self.name)
        self.parameter_count = sum(p.numel() for p in self.net.parameters())
        self.weights_sha256 = sha256_of(path)
        self.eval()

    @property
    def label(self) -> str:
        return self.name if self.options["embedding_size"] == 512 else f"{self.name}-{self.options['embedding_size']}"

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), **self.options, "shift": self.shift, "weights_sha256": self.weights_sha256}

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 48 kHz → ``(batch, windows, dim)``, one 1 s window every 0.96 s."""
        n = waveforms.shape[0]
        windows = self._frames(waveforms.float(), SAMPLE_RATE, center=True, hop_size=HOP_SECONDS, sampler="julian")
        out = torch.cat([self.net(chunk) for chunk in windows.float().split(self.frame_batch)])
        return out.reshape(n, -1, self.dim) + self.shift
