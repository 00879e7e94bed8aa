"""musicnn (Pons & Serra 2019): a music tagger used as a teacher, offline and in PyTorch.

Our own port of the ``musicnn`` network and its input pipeline; the
weights are the TensorFlow 1 checkpoints inside the PyPI wheel
``musicnn==0.1.0`` (ISC licence), fetched with ``pip download --no-deps``,
read with our tensor-bundle reader (:mod:`eastmir.teachers.tf_bundle`,
CRC-checked) and never installed or imported. ``weights: msd`` (trained on
the Million Song Dataset, the default) or ``mtt`` (MagnaTagATune: it
refuses to teach a MagnaTagATune run, whose test clips it was trained on,
unless ``allow_test_leakage: true``).

Input (as the published model's): 16 kHz mono; STFT with n_fft 512, hop 256, a
periodic Hann window, centred frames (reflect padding, as the librosa of
2019); power; 96 Slaney mel bands with Slaney normalisation (0–8 kHz);
``log10(10 000·x + 1)`` computed in float32 (the original casts to float16
first, which overflows on loud audio). Patches of 187 frames (2.992 s),
non-overlapping, a trailing partial patch dropped; a clip shorter than one
patch is repeated to fill it (as the models were trained).

Graph (every convolution: conv → ReLU → BN, every BN ε = 1e-3): input BN;
timbral branch: time padded by 3 on both sides, valid 7×38 and 7×67 convs
(204 filters each) over (time × mel); temporal branch: "same" 128×1, 64×1
and 32×1 convs (51 filters each); each branch max-pooled over frequency →
561 × T. Mid-end: three 7-tap convs over the whole width (64 filters), the
2nd and 3rd residual; the concatenation [561, m1, m1+m2, m1+m2+m3] → 753 ×
T. Back-end: max and mean over time, interleaved → 1506 → BN → dense 200 +
ReLU → BN (``penultimate``) → dense 50 (the tags).

Embedding per patch (``layer``): ``penultimate`` (200-d, default),
``max_pool`` or ``mean_pool`` (753-d); frame period 2.992 s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eastmir.errors import WeightsUnavailable
from eastmir.folding import optimise_for_inference
from eastmir.frontend import mel_filterbank
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.musicnn_tags import TAGS
from eastmir.teachers.tf_bundle import read_bundle
from eastmir.teachers.weights import WheelWeights, fetch_wheel_files

WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MUSICNN_WEIGHTS = {
    "msd": WheelWeights(
        "musicnn",
        "0.1.0",
        WHEEL_SHA256,
        (
            ("musicnn/MSD_musicnn/.index", "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8"),
            (
                "musicnn/MSD_musicnn/.data-00000-of-00001",
                "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
            ),
        ),
    ),
    "mtt": WheelWeights(
        "musicnn",
        "0.1.0",
        WHEEL_SHA256,
        (
            ("musicnn/MTT_musicnn/.index", "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57"),
            (
                "musicnn/MTT_musicnn/.data-00000-of-00001",
                "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
            ),
        ),
    ),
}
SAMPLE_RATE, N_FFT, HOP, N_MELS, PATCH = 16000, 512, 256, 96, 187
LAYERS = {"penultimate": 200, "max_pool": 753, "mean_pool": 753}
OPTIMISER_STATE = ("Adam", "beta1_power", "beta2_power")


class MusicnnFrontend(nn.Module):
    """Waveform ``(batch, samples)`` at 16 kHz → log-mel ``(batch, frames, 96)``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        fb = mel_filterbank(
            N_FFT, SAMPLE_RATE, N_MELS, 0.0, SAMPLE_RATE / 2, scale="slaney", triangles="hz", norm="slaney"
        )
        self.register_buffer("filterbank", fb, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            waveform, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        mel = torch.einsum("bft,fm->btm", power, self.filterbank)
        return torch.log10(10000.0 * mel + 1.0)


def patches(logmel: torch.Tensor) -> torch.Tensor:
    """``(batch, frames, mels)`` → ``(batch, patches, 187, mels)``: non-overlapping, a partial last one dropped,
    a clip shorter than one patch repeated to fill it."""
    frames = logmel.shape[1]
    if frames < PATCH:
        logmel = logmel.repeat(1, -(-PATCH // frames), 1)[:, :PATCH]
    count = logmel.shape[1] // PATCH
    return logmel[:, : count * PATCH].reshape(logmel.shape[0], count, PATCH, logmel.shape[2])


def _bn(channels: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, eps=1e-3)


class MusicnnNet(nn.Module):
    """Patches ``(batch, 187, 96)`` → ``{"penultimate", "max_pool", "mean_pool", "logits"}``; 787 159 parameters."""

    def __init__(self, n_tags: int = 50) -> None:
        super().__init__()
        self.input_bn = _bn(1)
        self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, 38)), nn.Conv2d(1, 204, (7, 67))])
        self.timbral_bn = nn.ModuleList([_bn(204), _bn(204)])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
        self.temporal_bn = nn.ModuleList([_bn(51) for _ in range(3)])
        self.midend = nn.ModuleList([nn.Conv1d(561, 64, 7), nn.Conv1d(64, 64, 7), nn.Conv1d(64, 64, 7)])
        self.midend_bn = nn.ModuleList([_bn(64, 1) for _ in range(3)])
        self.pool_bn = _bn(1506, 1)
        self.dense = nn.Linear(1506, 200)
        self.dense_bn = _bn(200, 1)
        self.tags = nn.Linear(200, n_tags)

    def forward(self, patch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_bn(patch.unsqueeze(1))  # (batch, 1, time, mels)
        branches = []
        padded = F.pad(x, (0, 0, 3, 3))  # time only: the convolutions span most of the frequency axis
        for conv, bn in zip(self.timbral, self.timbral_bn):
            branches.append(bn(F.relu(conv(padded))).amax(dim=3))  # (batch, 204, time)
        for conv, bn in zip(self.temporal, self.temporal_bn):
            k = conv.kernel_size[0]
            same = F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))  # TensorFlow's "same": the extra frame after
            branches.append(bn(F.relu(conv(same))).amax(dim=3))  # (batch, 51, time)
        front = torch.cat(branches, dim=1)  # (batch, 561, time)
        features, last = [front], front
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn)):
            y = bn(F.relu(conv(F.pad(last, (3, 3)))))
            last = y if i == 0 else y + last
            features.append(last)
        mid = torch.cat(features, dim=1)  # (batch, 753, time)
        max_pool, mean_pool = mid.amax(dim=2), mid.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=-1).flatten(1)  # interleaved, as TensorFlow's concat+flatten
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {
            "penultimate": penultimate,
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "logits": self.tags(penultimate),
        }


def tensorflow_state(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The checkpoint's variables (named as TensorFlow 1 layers name them, in creation order) → our state dict.

    Raises when a variable is left over or a parameter is left unset, so no weight can be silently ignored.
    """
    convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
    bns = [
        "input_bn",
        "timbral_bn.0",
        "timbral_bn.1",
        "temporal_bn.0",
        "temporal_bn.1",
        "temporal_bn.2",
        "midend_bn.0",
        "midend_bn.1",
        "midend_bn.2",
        "pool_bn",
        "dense_bn",
    ]
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise WeightsUnavailable(f"the musicnn checkpoint has no variable {name}")
        used.add(name)
        return tensors[name]

    for i, ours in enumerate(convs):
        tf = f"conv2d_{i}" if i else "conv2d"
        kernel = take(f"{tf}/kernel")  # (kh, kw, in, out)
        weight = kernel.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
        if ours.startswith("midend"):  # a (7 × width) 2-D kernel over (time × channels) is a 1-D conv over time
            weight = weight[:, 0].transpose(0, 2, 1)  # (out, width, 7)
        state[f"{ours}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{ours}.bias"] = torch.from_numpy(take(f"{tf}/bias"))
    for i, ours in enumerate(bns):
        tf = f"batch_normalization_{i}" if i else "batch_normalization"
        for src, dst in (
            ("gamma", "weight"),
            ("beta", "bias"),
            ("moving_mean", "running_mean"),
            ("moving_variance", "running_var"),
        ):
            state[f"{ours}.{dst}"] = torch.from_numpy(take(f"{tf}/{src}"))
        state[f"{ours}.num_batches_tracked"] = torch.tensor(0)
    for tf, ours in (("dense", "dense"), ("dense_1", "tags")):
        state[f"{ours}.weight"] = torch.from_numpy(np.ascontiguousarray(take(f"{tf}/kernel").T))
        state[f"{ours}.bias"] = torch.from_numpy(take(f"{tf}/bias"))
    unused = sorted(set(tensors) - used)
    if unused:
        raise WeightsUnavailable(f"musicnn checkpoint variables left unused: {unused}")
    return state


def load_musicnn(weights: str = "msd", weights_dir: str | Path | None = None) -> tuple[MusicnnNet, str]:
    """The network with the ``msd`` or ``mtt`` weights, and a sha256 of its checkpoint files."""
    files = fetch_wheel_files(MUSICNN_WEIGHTS[weights], weights_dir)
    index = next(p for m, p in files.items() if m.endswith(".index"))
    data = next(p for m, p in files.items() if not m.endswith(".index"))
    tensors = read_bundle(index, data, skip=OPTIMISER_STATE)
    net = MusicnnNet()
    net.load_state_dict(tensorflow_state(tensors), strict=True)
    digest = hashlib.sha256("".join(sorted(sha for _, sha in MUSICNN_WEIGHTS[weights].files)).encode()).hexdigest()
    return net.eval(), digest


@TEACHERS.register("musicnn")
class MusicnnTeacher(Teacher):
    """musicnn's embedding of every 2.992 s patch (``layer``), with the MSD (default) or MTT weights."""

    name = "musicnn"
    version = "0.1.0"
    revision = 2  # 2: one clip per call on one thread (same bytes however clips were batched)
    sample_rate = SAMPLE_RATE
    frame_seconds = PATCH * HOP / SAMPLE_RATE
    licence = "ISC (code and weights)"
    source = f"PyPI wheel musicnn==0.1.0 (sha256 {WHEEL_SHA256[:12]}…), MSD_musicnn / MTT_musicnn checkpoints"
    weights_specs = (MUSICNN_WEIGHTS["msd"], MUSICNN_WEIGHTS["mtt"])
    dims = "200 (penultimate), 753 (max_pool, mean_pool)"
    trained_on: ClassVar[dict[str, str]] = {"mtt": "magnatagatune"}  # weights → the dataset they saw

    def __init__(
        self,
        weights: Literal["msd", "mtt"] = "msd",
        layer: Literal["penultimate", "max_pool", "mean_pool"] = "penultimate",
        weights_dir: Path | None = None,
        allow_test_leakage: bool = False,
        patch_batch: int = 16,
    ) -> None:
        """``patch_batch``: patches per network call (memory; another value can change the last bits, so it
        keys the store)."""
        super().__init__()
        self.weights, self.layer, self.patch_batch = weights, layer, patch_batch
        self.dim = LAYERS[layer]
        self.frontend = MusicnnFrontend()
        self.net, self.weights_sha256 = load_musicnn(weights, weights_dir)
        self.parameter_count = sum(p.numel() for p in self.net.parameters())
        self.net = optimise_for_inference(self.net, torch.zeros(2, PATCH, N_MELS))
        self.requires_grad_(False)

    @classmethod
    def refuses(cls, dataset: str, options: dict[str, Any]) -> str | None:
        """Why this teacher must not teach ``dataset`` (its test clips are in the teacher's training data)."""
        weights = options.get("weights", "msd")
        if cls.trained_on.get(weights) == dataset and not options.get("allow_test_leakage"):
            return (
                f"musicnn's {weights} weights were trained on {dataset}, test clips included: they would leak the "
                "test split into the student; use weights: msd, or set allow_test_leakage: true to do it anyway"
            )
        return None

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "weights": self.weights,
            "layer": self.layer,
            "weights_sha256": self.weights_sha256,
            "patch_batch": self.patch_batch,
        }

    @property
    def label(self) -> str:
        return f"musicnn-{self.weights}"

    @torch.no_grad()
    def forward_patches(self, waveforms: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output for every patch: ``(batch, patches, …)``."""
        cut = patches(self.frontend(waveforms))
        n, p = cut.shape[:2]
        chunks = [self.net(chunk) for chunk in cut.reshape(n * p, PATCH, N_MELS).split(self.patch_batch)]
        return {k: torch.cat([c[k] for c in chunks]).reshape(n, p, -1) for k in chunks[0]}

    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.forward_patches(waveforms)[self.layer]

    def tag(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Tag probabilities ``(batch, patches, 50)`` (:mod:`eastmir.teachers.musicnn_tags`)."""
        return torch.sigmoid(self.forward_patches(waveforms)["logits"])

    @property
    def tags(self) -> list[str]:
        return TAGS[self.weights]
