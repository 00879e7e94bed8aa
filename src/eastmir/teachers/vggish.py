"""VGGish (Hershey et al., ICASSP 2017) through ``torchvggish`` (``pip install 'eastmir[vggish]'``).

Chosen over ``torch-vggish-yamnet``, which needs torchaudio, and the
TensorFlow original: ``torchvggish`` is the PyTorch port the community
uses, needs only numpy, resampy and torch, and its weights are the
official ones converted (published with their sha256 prefix in the file
name, checked here).

Configured as the OpenMIC-2018 features the paper uses: 16 kHz mono → the
package's ``waveform_to_examples`` (25 ms Hann windows, 10 ms hop, 64 mel
bands 125–7500 Hz, ``log(mel + 0.01)``, non-overlapping examples of 96
frames = 0.96 s) → the package's VGG → 128-d per 0.96 s. With
``postprocess`` (default) the package's PCA whitening, clipping to ±2 and
8-bit quantisation follow, then ``(q − 128) / 256``, the published
normalisation of the stored OpenMIC features (the published one). A clip
shorter than one example is zero-padded to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eastmir.fetch import sha256_of
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.published import PublishedWeights, load_checkpoint, load_into, locate_weights, require

RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"
WEIGHTS = PublishedWeights(
    f"{RELEASE}/vggish-10086976.pth", "vggish-10086976.pth", "sha256-prefix:10086976", "Apache 2.0"
)
PCA = PublishedWeights(
    f"{RELEASE}/vggish_pca_params-970ea276.pth",
    "vggish_pca_params-970ea276.pth",
    "sha256-prefix:970ea276",
    "Apache 2.0",
)
SAMPLE_RATE = 16000
MIN_SAMPLES = 400 + 95 * 160  # one 25 ms window plus 95 hops of 10 ms: 96 frames, one example


@TEACHERS.register("vggish")
class VggishTeacher(Teacher):
    name = "vggish"
    version = "torchvggish-0.2"
    sample_rate = SAMPLE_RATE
    frame_seconds = 0.96
    dim = 128
    licence = "Apache 2.0 (code and weights)"
    source = f"pip install 'eastmir[vggish]' (torchvggish); {WEIGHTS.describe}, {PCA.filename}"
    weights_specs = (WEIGHTS, PCA)
    dims = "128"

    def __init__(
        self,
        postprocess: bool = True,
        weights_file: Path | None = None,
        pca_file: Path | None = None,
        weights_dir: Path | None = None,
    ) -> None:
        """``weights_file`` / ``pca_file``: your own files instead of the published ones; ``weights_dir``: a
        folder holding the published files (offline use)."""
        super().__init__()
        require("torchvggish", "vggish", self.name)
        from torchvggish import torchvggish as network
        from torchvggish import vggish_input

        self._examples = vggish_input.waveform_to_examples
        path = locate_weights(WEIGHTS, self.name, weights_file, weights_dir)
        self.net = network._vgg(postprocess=False)
        load_into(self.net, load_checkpoint(path, self.name), path, self.name)
        self.parameter_count = sum(p.numel() for p in self.net.parameters())
        self.weights_sha256 = sha256_of(path)
        self.postprocess = postprocess
        self.pca_sha256 = None
        if postprocess:
            pca_path = locate_weights(PCA, self.name, pca_file, weights_dir)
            params = load_checkpoint(pca_path, self.name, numpy_arrays=True)
            self.register_buffer("pca_matrix", torch.as_tensor(params["pca_eigen_vectors"]).float())
            self.register_buffer("pca_means", torch.as_tensor(params["pca_means"]).float().reshape(-1, 1))
            if self.pca_matrix.shape != (128, 128) or self.pca_means.shape != (128, 1):
                raise ValueError(
                    f"{pca_path}: PCA parameters of shapes {self.pca_matrix.shape}, {self.pca_means.shape}"
                )
            self._postprocessor = network.Postprocessor.__new__(network.Postprocessor)  # its __init__ downloads
            self.pca_sha256 = sha256_of(pca_path)
        self.eval()

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "weights_sha256": self.weights_sha256,
            "postprocess": self.postprocess,
            "pca_sha256": self.pca_sha256,
        }

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 16 kHz → ``(batch, examples, 128)``, one example per 0.96 s."""
        device = waveforms.device
        audio = waveforms.detach().float().cpu()
        if audio.shape[1] < MIN_SAMPLES:
            audio = torch.nn.functional.pad(audio, (0, MIN_SAMPLES - audio.shape[1]))
        examples = [self._examples(clip.numpy(), SAMPLE_RATE, return_tensor=True).detach() for clip in audio]
        n, frames = len(examples), examples[0].shape[0]
        out = self.net(torch.cat(examples).to(device))  # (batch · examples, 128)
        if self.postprocess:
            self._postprocessor._pca_matrix, self._postprocessor._pca_means = self.pca_matrix, self.pca_means
            quantised = self._postprocessor.postprocess(out).reshape(-1, self.dim)
            out = (quantised - 128.0) / 256.0
        return out.reshape(n, frames, self.dim)
