"""PaSST (Koutini et al., Interspeech 2022): the AudioSet model ``passt_s_swa_p16_128_ap476`` the papers used.

The network is the authors' own, from their package ``hear21passt``
(installed with ``pip install --no-deps hear21passt==0.0.26``: the package
declares torchaudio and timm, and installing those could replace your
torch; eastmir needs neither). Of the package eastmir imports only the model
module, ``hear21passt.models.passt``, which imports only torch and its own
helpers; the helpers import one name from timm at import time, a download
function eastmir never calls (it builds the model with ``pretrained=False``
and loads the published file itself). Unless timm is imported already, a
stand-in supplies that name for the duration of the import and is removed
afterwards (:func:`passt_models`).

The package's front end (``models/preprocess.py``, ``AugmentMelSTFT``) needs
torchaudio for two things: Kaldi mel banks and the training-time masks. In
evaluation mode it is pre-emphasis ``x[n+1] - 0.97 x[n]``, a centred STFT
(n_fft 1024, a symmetric 800-sample Hann window, hop 320, reflect padding),
power, 128 Kaldi mel bands from 0 to 15 000 Hz (its ``fmax=None`` means
16 000 − 2 000 / 2), ``log(mel + 1e-5)`` and ``(x + 4.5) / 5``. That is
eastmir's own log-mel front end (the one checked against the authors' EAsT
arrays) with these settings: :data:`FRONTEND`; ``tests/test_passt.py``
compares it with the formula written out in numpy.

Windows as the package's ``get_timestamp_embeddings`` with 0.96 s windows
and hops: the clip is reflect-padded by half a window on each side and cut
into ``samples // 30720 + 1`` windows of 30 720 samples, each centred on
``i · 0.96 s``; each window's embedding is the 768-d mean of the class and
distillation tokens (``mode="embed_only"``). A clip shorter than half a
window, which reflect padding cannot pad, is first extended with zeros to
half a window plus one sample.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from eastmir.errors import ConfigError
from eastmir.fetch import sha256_of
from eastmir.frontend import FrontendConfig, LogMelFrontend
from eastmir.registry import TEACHERS
from eastmir.teachers.base import Teacher
from eastmir.teachers.published import PublishedWeights, load_checkpoint, load_into, locate_weights

WEIGHTS = PublishedWeights(
    "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    "passt-s-f128-p16-s10-ap.476-swa.pt",
    None,
    "Apache 2.0",
)
ARCH = "passt_s_swa_p16_128_ap476"
PACKAGE = "hear21passt"
INSTALL = "pip install --no-deps hear21passt==0.0.26"
SAMPLE_RATE = 32000
WINDOW = 30720  # 0.96 s at 32 kHz: the window and the hop
WINDOWS_PER_CALL = 64  # windows through the network at once (memory bound, not a result)

FRONTEND = FrontendConfig(
    sample_rate=SAMPLE_RATE,
    n_fft=1024,
    win_length=800,
    hop_length=320,
    n_mels=128,
    fmin=0.0,
    fmax=15000.0,
    mel_scale="htk",  # Kaldi's 1127 ln(1 + f/700): the same triangles (the scale factor cancels)
    log_eps=1e-5,
    norm_shift=4.5,
    norm_scale=5.0,
    preemphasis=0.97,
    window="symmetric",
    pad_mode="reflect",
)

_TIMM_NAMES = ("timm", "timm.models", "timm.models._hub")


def _refuse_download(url: str, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError(f"eastmir loads PaSST's weights itself; the package tried to download {url}")


@contextlib.contextmanager
def _timm_download_stand_in() -> Iterator[None]:
    """While the block runs, ``timm.models._hub.download_cached_file`` resolves to :func:`_refuse_download`
    unless timm is imported already (a timm installed but not imported is not imported: it may pull a
    torchvision built for another torch); the stand-in modules are removed afterwards."""
    if "timm" in sys.modules:
        yield
        return
    modules = {name: types.ModuleType(name) for name in _TIMM_NAMES}
    modules["timm.models._hub"].download_cached_file = _refuse_download  # type: ignore[attr-defined]
    modules["timm"].models = modules["timm.models"]  # type: ignore[attr-defined]
    modules["timm.models"]._hub = modules["timm.models._hub"]  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def passt_models() -> types.ModuleType:
    """``hear21passt.models.passt`` (without its front end, torchaudio or timm), or a one-line error saying how
    to install the package."""
    import importlib

    try:
        with _timm_download_stand_in():
            module = importlib.import_module(f"{PACKAGE}.models.passt")
    except ImportError as err:
        raise ConfigError(
            f"teacher passt runs the network of the {PACKAGE} package, which cannot be imported here ({err}); "
            f"install it with `{INSTALL}` (--no-deps: it declares torchaudio and timm, which eastmir does not "
            "need and which could replace your torch)"
        ) from None
    module.first_RUN = False  # the package prints tensor shapes on its first forward pass otherwise
    return module


def build_network(models: types.ModuleType | None = None) -> torch.nn.Module:
    """The package's ``passt_s_swa_p16_128_ap476`` with untrained weights (its construction log silenced);
    ``models``: the package's model module, when the caller has it already."""
    models = models or passt_models()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the whole model
        return models.get_model(arch=ARCH, pretrained=False)


def timestamp_windows(waveforms: torch.Tensor) -> torch.Tensor:
    """``(batch, samples)`` → ``(batch, samples // 30720 + 1, 30720)``: the package's ``get_timestamp_embeddings``
    windows (reflect padding by half a window, then windows of 0.96 s every 0.96 s)."""
    half = WINDOW // 2
    if waveforms.shape[-1] <= half:  # reflect padding needs more samples than it pads
        waveforms = torch.nn.functional.pad(waveforms, (0, half + 1 - waveforms.shape[-1]))
    padded = torch.nn.functional.pad(waveforms[:, None], (half, half), mode="reflect")[:, 0]
    return padded.unfold(-1, WINDOW, WINDOW)


@TEACHERS.register("passt")
class PasstTeacher(Teacher):
    name = "passt"
    version = "hear21passt-ap476"
    revision = 2  # 2: eastmir's own front end and window batching (1 ran the package's, with torchaudio)
    sample_rate = SAMPLE_RATE
    frame_seconds = WINDOW / SAMPLE_RATE
    dim = 768
    licence = "Apache 2.0 (code and weights)"
    source = f"{INSTALL} (its network only: no torchaudio or timm); {WEIGHTS.describe}"
    weights_specs = (WEIGHTS,)
    dims = "768"

    def __init__(self, weights_file: Path | None = None, weights_dir: Path | None = None) -> None:
        """``weights_file``: your own PaSST-S checkpoint (the published layout); ``weights_dir``: a folder holding
        the published one."""
        super().__init__()
        models = passt_models()
        self.frontend = LogMelFrontend(FRONTEND)
        self.net = build_network(models)
        path = locate_weights(WEIGHTS, self.name, weights_file, weights_dir)
        load_into(self.net, models.checkpoint_filter_fn(load_checkpoint(path, self.name), self.net), path, self.name)
        heads = ("head.", "head_dist.")
        self.parameter_count = sum(p.numel() for n, p in self.net.named_parameters() if not n.startswith(heads))
        self.weights_sha256 = sha256_of(path)
        self.package_version = importlib.metadata.version(PACKAGE)
        self.eval()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights_sha256": self.weights_sha256, "package": self.package_version}

    @torch.no_grad()
    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 32 kHz → ``(batch, samples // 30720 + 1, 768)``."""
        windows = timestamp_windows(waveforms.float())
        batch, count = windows.shape[:2]
        features = [self.embed_windows(chunk) for chunk in windows.reshape(-1, WINDOW).split(WINDOWS_PER_CALL)]
        return torch.cat(features).reshape(batch, count, self.dim)

    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """``(n, 30720)`` → ``(n, 768)``: log-mel ``(n, 1, 128, 96)``, then the network's mean of its two tokens."""
        mels = self.frontend(windows)[:, None]
        with warnings.catch_warnings():  # 96 frames, not the 998 of a 10 s clip: the package warns, and crops
            warnings.filterwarnings("ignore", message=r"Input image size")
            _logits, features = self.net(mels)
        return features
