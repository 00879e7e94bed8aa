"""PANNs CNN14 (Kong et al., TASLP 2020) through ``panns-inference`` (``pip install 'eastmir[panns]'``).

``panns-inference`` is the authors' own inference package; its ``Cnn14``
is the network of the published checkpoint ``Cnn14_mAP=0.431.pth``
(Zenodo record 3987831, md5 checked). Importing the package's top level
runs ``wget`` for AudioSet's label list (a network side effect at import
time), so only its ``models`` module (and the helpers it imports) is
loaded, under a private name.

Configured as in the paper: 32 kHz mono, the package's front end (1024-point
Hann STFT, hop 320, 64 mel bands 50–14 000 Hz, log), CNN14 → one global
2048-d embedding per clip (the ``embedding`` output), which the student's
regulariser repeats to every frame.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch

from eastmir.fetch import sha256_of
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.published import PublishedWeights, load_checkpoint, load_into, locate_weights, require

WEIGHTS = PublishedWeights(
    "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1",
    "Cnn14_mAP=0.431.pth",
    "md5:541141fa2ee191a88f24a3219fff024e",
    "CC BY 4.0 (weights), MIT (code)",
)
SAMPLE_RATE = 32000
PRIVATE = "_eastmir_panns_inference"


def panns_models() -> types.ModuleType:
    """``panns_inference.models`` without running the package's ``__init__`` (and its ``wget``)."""
    if f"{PRIVATE}.models" in sys.modules:
        return sys.modules[f"{PRIVATE}.models"]
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        require("panns_inference", "panns", "panns")  # raises with the pip line
    package = types.ModuleType(PRIVATE)
    package.__path__ = list(spec.submodule_search_locations)  # type: ignore[union-attr]
    sys.modules[PRIVATE] = package
    try:
        return importlib.import_module(f"{PRIVATE}.models")
    except ImportError as err:
        del sys.modules[PRIVATE]
        require(str(err.name or "torchlibrosa"), "panns", "panns")
        raise


@TEACHERS.register("panns")
class PannsTeacher(Teacher):
    name = "panns"
    version = "panns-inference-0.1.1-cnn14"
    sample_rate = SAMPLE_RATE
    frame_seconds = None  # one vector per clip
    dim = 2048
    licence = WEIGHTS.licence
    source = f"pip install 'eastmir[panns]' (panns-inference); {WEIGHTS.describe}"
    weights_specs = (WEIGHTS,)
    dims = "2048"

    def __init__(self, weights_file: Path | None = None, weights_dir: Path | None = None) -> None:
        """``weights_file``: your own CNN14 checkpoint; ``weights_dir``: a folder holding the published one."""
        super().__init__()
        models = panns_models()
        self.net = models.Cnn14(
            sample_rate=SAMPLE_RATE, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527
        )
        path = locate_weights(WEIGHTS, self.name, weights_file, weights_dir)
        checkpoint = load_checkpoint(path, self.name)
        load_into(self.net, checkpoint.get("model", checkpoint), path, self.name)
        self.weights_sha256 = sha256_of(path)
        # as published: the learned backbone (no AudioSet head, no frozen STFT / mel kernels)
        classifier = sum(p.numel() for p in self.net.fc_audioset.parameters())
        self.parameter_count = sum(p.numel() for p in self.net.parameters() if p.requires_grad) - classifier
        self.eval()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": self.weights_sha256}

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 32 kHz → ``(batch, 1, 2048)``."""
        return self.net(waveforms.float(), None)["embedding"].unsqueeze(1)
