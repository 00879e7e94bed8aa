"""PaSST (Koutini et al., Interspeech 2022) through ``hear21passt`` (``pip install 'eastmir[passt]'``).

``hear21passt`` is the authors' own package (their HEAR 2021 entry). It
imports torchaudio (its mel front end) and timm (a download helper), so it
runs where those have builds for the installed torch; on this project's
CPU test machine (torch 2.13) neither has, and this teacher is not tested
there (see the README).

Configured as in the paper: 32 kHz mono, the package's front end (128 mel
bands, 25 ms windows, 10 ms hop) in evaluation mode, the AudioSet model
``passt_s_swa_p16_128_ap476`` built without its download and loaded from the
published file, its 768-d embedding (``mode="embed_only"``) for windows of
0.96 s every 0.96 s (the package's ``get_timestamp_embeddings``: windows
centred on the hops, the clip reflect-padded by half a window).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eastmir.fetch import sha256_of
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.published import PublishedWeights, load_checkpoint, load_into, locate_weights, require

WEIGHTS = PublishedWeights(
    "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    "passt-s-f128-p16-s10-ap.476-swa.pt",
    None,
    "Apache 2.0",
)
SAMPLE_RATE = 32000
WINDOW_MS = 960


@TEACHERS.register("passt")
class PasstTeacher(Teacher):
    name = "passt"
    version = "hear21passt-0.0.26-ap476"
    sample_rate = SAMPLE_RATE
    frame_seconds = WINDOW_MS / 1000
    dim = 768
    licence = "Apache 2.0 (code and weights)"
    source = f"pip install 'eastmir[passt]' (hear21passt; needs torchaudio); {WEIGHTS.describe}"
    weights_specs = (WEIGHTS,)
    dims = "768"

    def __init__(self, weights_file: Path | None = None, weights_dir: Path | None = None) -> None:
        super().__init__()
        require("hear21passt.wrapper", "passt", self.name)
        require("torchaudio", "passt", self.name)
        from hear21passt.models.passt import checkpoint_filter_fn, get_model
        from hear21passt.models.preprocess import AugmentMelSTFT
        from hear21passt.wrapper import PasstBasicWrapper

        mel = AugmentMelSTFT(
            n_mels=128,
            sr=SAMPLE_RATE,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=48,
            timem=192,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )
        net = get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
        path = locate_weights(WEIGHTS, self.name, weights_file, weights_dir)
        load_into(net, checkpoint_filter_fn(load_checkpoint(path, self.name), net), path, self.name)
        self.model = PasstBasicWrapper(
            mel=mel, net=net, mode="embed_only", timestamp_window=WINDOW_MS, timestamp_hop=WINDOW_MS
        )
        self.parameter_count = sum(p.numel() for p in net.parameters())
        self.weights_sha256 = sha256_of(path)
        self.eval()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": self.weights_sha256}

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 32 kHz → ``(batch, windows, 768)``."""
        embeddings, _timestamps = self.model.get_timestamp_embeddings(waveforms.float())
        return embeddings.to(waveforms.device)
