"""Golden arrays from hear21passt's own PaSST pipeline, for ``tests/test_passt.py``.

The package's front end (``AugmentMelSTFT``, with torchaudio), its network and
its ``get_timestamp_embeddings`` (0.96 s windows and hops), on seeded weights
and generated audio. Run it where hear21passt, torchaudio and timm all import
(torchaudio has no build for the torch of eastmir's own venv, so not there):

    python tools/passt_golden.py tests/data/golden/passt.npz

It imports nothing of eastmir. The weights and the audio are made from numpy
seeds by :func:`seeded_state` and :func:`clip_audio`, which the test loads
from this file, so both sides compute on the same numbers; the file records
each clip's sha256 so a changed generator is noticed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

LAYOUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "passt_layout.json"
SECONDS = (0.96, 2.5, 10.0)
SAMPLE_RATE = 32000
NORMS = ("norm1.weight", "norm2.weight", "norm.weight", "head.0.weight")


def seeded_state(seed: int = 3) -> dict[str, np.ndarray]:
    """float32 arrays for every tensor of the published layout: layer-norm scales near 1, everything else
    normal with standard deviation 0.02 (the scale of the package's own initialisation)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in json.loads(LAYOUT.read_text())["tensors"].items():
        value = rng.standard_normal(shape) * (0.1 if name.endswith(NORMS) else 0.02)
        state[name] = (value + (1.0 if name.endswith(NORMS) else 0.0)).astype(np.float32)
    return state


def clip_audio(seconds: float) -> np.ndarray:
    """``(samples,)`` float32 at 32 kHz: a gliding tone, a second partial and noise, 0.3 peak-ish."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(n)
    tone = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 20)) + 0.1 * np.sin(2 * np.pi * 1760 * t)
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def main(out: str) -> None:
    import importlib.metadata

    import torch
    from hear21passt.models.passt import checkpoint_filter_fn, get_model
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    # as hear21passt.base.get_basic_model builds it, without downloading the weights
    mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                         htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)  # fmt: skip
    net = get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
    state = {name: torch.from_numpy(value) for name, value in seeded_state().items()}
    net.load_state_dict(checkpoint_filter_fn(state, net), strict=True)
    model = PasstBasicWrapper(mel=mel, net=net, mode="embed_only", timestamp_window=960, timestamp_hop=960).eval()
    arrays: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for seconds in SECONDS:
            audio = clip_audio(seconds)
            embeddings, timestamps = model.get_timestamp_embeddings(torch.from_numpy(audio)[None])
            arrays[f"embeddings_{seconds}"] = embeddings[0].numpy()
            arrays[f"timestamps_{seconds}"] = timestamps[0].numpy()
            arrays[f"audio_sha256_{seconds}"] = np.array(sha256(audio))
        arrays["logmel_2.5"] = model.mel(torch.from_numpy(clip_audio(2.5))[None])[0].numpy()
    versions = {name: importlib.metadata.version(name) for name in ("torch", "torchaudio", "hear21passt", "timm")}
    arrays["versions"] = np.array(json.dumps(versions))
    np.savez_compressed(out, **arrays)
    print(out, versions, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
