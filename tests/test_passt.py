"""PaSST on torch without torchaudio or timm: the package's network, eastmir's front end, the package's windows.

The network gets seeded weights (the package's own initialisation, seed 3)
saved in the published file's layout; its keys and shapes are listed in
``tests/data/passt_layout.json`` (from the package's model definition). The
front end is compared with the package's formula written out here in numpy
(float64); the embeddings with the package's own ``get_timestamp_embeddings``
driven by that numpy front end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from eastmir import pipeline
from eastmir.audio import load_audio
from eastmir.cli import main
from eastmir.config import load_config
from eastmir.data.store import Store
from eastmir.errors import ConfigError, WeightsUnavailable

pytest.importorskip("hear21passt", reason="install with `pip install --no-deps hear21passt==0.0.26` (make venv does)")

ROOT = Path(__file__).parents[1]


def package_log_mel(audio: np.ndarray) -> np.ndarray:
    """``AugmentMelSTFT`` of hear21passt in evaluation mode, as its source reads, in float64 numpy:
    ``(n, samples)`` → ``(n, 128, frames)``."""
    x = audio[:, 1:] - 0.97 * audio[:, :-1]  # conv1d with the kernel [-0.97, 1]
    n_fft, hop, win = 1024, 320, 800
    padded = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")  # torch.stft(center=True)'s default
    frames = 1 + x.shape[1] // hop
    window = np.zeros(n_fft)
    offset = (n_fft - win) // 2
    window[offset : offset + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))  # periodic=False
    index = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    power = np.abs(np.fft.rfft(padded[:, index] * window, axis=-1)) ** 2  # (n, frames, 513)
    # torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000, 0, 15000, vtln ... warp 1.0), then a zero column
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    low, high = mel(0.0), mel(15000.0)
    delta = (high - low) / (128 + 1)
    bins = np.arange(128)[:, None]
    left, centre, right = low + bins * delta, low + (bins + 1) * delta, low + (bins + 2) * delta
    fft_mel = mel(32000 / n_fft * np.arange(n_fft // 2))[None, :]
    banks = np.maximum(0.0, np.minimum((fft_mel - left) / (centre - left), (right - fft_mel) / (right - centre)))
    banks = np.pad(banks, ((0, 0), (0, 1)))  # (128, 513)
    melspec = np.log(np.einsum("mf,ntf->nmt", banks, power) + 1e-5)
    return (melspec + 4.5) / 5.0


class NumpyMel(torch.nn.Module):
    """:func:`package_log_mel` as the module the package's wrapper calls (it reads ``.sr``)."""

    sr = 32000

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(package_log_mel(audio.double().numpy())).float()


@pytest.fixture(scope="module")
def passt_weights(tmp_path_factory) -> Path:
    """Seeded weights in the published layout: a plain state dict of the package's network."""
    from eastmir.teachers.passt import build_network

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("passt") / "passt-seeded.pt"
    torch.save(build_network().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def teacher(passt_weights):
    from eastmir.teachers.passt import PasstTeacher

    return PasstTeacher(weights_file=passt_weights)


def test_the_front_end_is_the_packages_formula():
    from eastmir.frontend import LogMelFrontend
    from eastmir.teachers.passt import FRONTEND

    rng = np.random.default_rng(0)
    audio = rng.normal(size=(3, 30720)) * np.array([[0.01], [0.3], [1.0]])
    audio[1] += np.sin(2 * np.pi * 440 * np.arange(30720) / 32000)  # a tone, a loud and a quiet noise
    ours = LogMelFrontend(FRONTEND)(torch.from_numpy(audio).float()).double().numpy()
    theirs = package_log_mel(audio)
    assert ours.shape == theirs.shape == (3, 128, 96)  # pre-emphasis drops a sample: 1 + 30719 // 320
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_the_network_has_the_published_files_layout(teacher):
    layout = json.loads((ROOT / "tests" / "data" / "passt_layout.json").read_text())
    assert layout["file"] == "passt-s-f128-p16-s10-ap.476-swa.pt"
    ours = {key: list(value.shape) for key, value in teacher.net.state_dict().items()}
    assert ours == layout["tensors"]
    assert teacher.parameter_count == 85_341_696  # without the AudioSet heads (86 153 758 with them)
    assert teacher.dim == 768 and teacher.frame_seconds == 0.96


def test_neither_torchaudio_nor_timm_is_imported(passt_weights):
    code = (
        "import sys; from eastmir.teachers.passt import PasstTeacher; import torch; "
        f"t = PasstTeacher(weights_file={str(passt_weights)!r}); t.embed(torch.zeros(1, 32000)); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torchaudio', 'timm', 'torchvision'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr  # nothing printed by the package either


@pytest.mark.filterwarnings("ignore:Input image size")  # the package's own call, on 96 frames
@pytest.mark.parametrize("seconds", [0.3, 0.96, 2.5])
def test_embeddings_equal_the_packages_timestamp_embeddings(teacher, seconds):
    from hear21passt.wrapper import PasstBasicWrapper

    package = PasstBasicWrapper(mel=NumpyMel(), net=teacher.net, mode="embed_only", timestamp_window=960,
                                timestamp_hop=960).eval()  # fmt: skip
    rng = np.random.default_rng(1)
    n = round(seconds * 32000)
    audio = torch.from_numpy(rng.normal(size=(2, n)) * 0.1 + np.sin(np.arange(n) / 7.0) * 0.2).float()
    ours = teacher.embed(audio)
    assert ours.shape == (2, n // 30720 + 1, 768)
    if n <= 15360:  # the package's reflect padding refuses it; eastmir extends it with zeros first
        with pytest.raises(RuntimeError):
            package.get_timestamp_embeddings(audio)
        audio = torch.nn.functional.pad(audio, (0, 15361 - n))
    with torch.no_grad():
        theirs, timestamps = package.get_timestamp_embeddings(audio)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4, rtol=0)
    assert timestamps[0].tolist() == pytest.approx([960.0 * i for i in range(ours.shape[1])])


def test_extract_runs_end_to_end_and_batching_does_not_matter(teacher, small_synth, tmp_path):
    import dataclasses

    clips = dataclasses.replace(small_synth, clips=small_synth.clips[:5])
    entries = {}
    for batch_size in (1, 4):
        collection, report = pipeline.extract(
            teacher, clips, Store(tmp_path / f"s{batch_size}"), batch_size, progress=False
        )
        assert report.built == 5 and not report.failed
        entries[batch_size] = {c.clip_id: collection.read(report.keys[c.clip_id]).copy() for c in clips.clips}
    clip = clips.clips[3]
    one = entries[1][clip.clip_id]
    assert one.shape == (3, 768)  # 2.5 s: windows centred on 0, 0.96 and 1.92 s
    for clip_id, entry in entries[1].items():
        np.testing.assert_allclose(entries[4][clip_id], entry, atol=1e-5)
    audio = torch.from_numpy(load_audio(clips.audio_file(clip), 32000))[None]  # resampled to the teacher's rate
    np.testing.assert_allclose(one, teacher.embed(audio)[0].numpy(), atol=1e-5)


def golden_tool():
    """``tools/passt_golden.py``: the seeded weights and audio the golden arrays were computed on."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("passt_golden", ROOT / "tools" / "passt_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_front_end_and_embeddings_equal_the_packages_own_with_torchaudio(tmp_path):
    """Against ``tests/data/golden/passt.npz``: hear21passt's ``AugmentMelSTFT`` (torchaudio's Kaldi banks) and
    ``get_timestamp_embeddings``, computed under torch 2.11 with torchaudio 2.11 and timm (README there)."""
    from eastmir.frontend import LogMelFrontend
    from eastmir.teachers.passt import FRONTEND, PasstTeacher

    tool = golden_tool()
    golden = np.load(ROOT / "tests" / "data" / "golden" / "passt.npz")
    assert json.loads(str(golden["versions"]))["torchaudio"] == "2.11.0"
    weights = tmp_path / "passt-golden.pt"
    torch.save({name: torch.from_numpy(value) for name, value in tool.seeded_state().items()}, weights)
    teacher = PasstTeacher(weights_file=weights)
    logmel = LogMelFrontend(FRONTEND)(torch.from_numpy(tool.clip_audio(2.5))[None])[0]
    # torchaudio builds the Kaldi banks in float32: 2.4e-4 from the float64 formula at worst (band 53), where ours
    # is 1.9e-5 from it (the test above); the embeddings agree to 8e-6 all the same
    np.testing.assert_allclose(logmel.numpy(), golden["logmel_2.5"], atol=5e-4, rtol=0)
    for seconds in tool.SECONDS:
        audio = tool.clip_audio(seconds)
        assert tool.sha256(audio) == str(golden[f"audio_sha256_{seconds}"])  # the same input as theirs
        ours = teacher.embed(torch.from_numpy(audio)[None])[0].numpy()
        assert ours.shape == golden[f"embeddings_{seconds}"].shape
        np.testing.assert_allclose(ours, golden[f"embeddings_{seconds}"], atol=5e-5, rtol=0)
        assert golden[f"timestamps_{seconds}"].tolist() == [960.0 * i for i in range(len(ours))]


def test_the_extract_command_and_a_fit_of_the_openmic_recipe_run(passt_weights, tmp_path, capsys):
    """``eastmir extract --teacher passt``, then ``openmic/east_final-passt`` (CP-ResNet narrowed to 8 channels)
    trained for one epoch on a rendered set, reading the embeddings the command stored."""
    synth = pipeline.prepare("synth", tmp_path / "data", {"n_clips": 24, "clip_seconds": 2.5, "seed": 5}, False)
    work = tmp_path / "work"
    argv = ["extract", "--teacher", "passt", "--dataset", str(synth.root), "--workdir", str(work), "--no-progress"]
    assert main([*argv, "--set", f"weights_file={passt_weights}"]) == 0
    assert "passt (dim 768, frame period 0.960 s): 24 stored now, 0 already stored" in capsys.readouterr().out
    overrides = ["data.dataset=synth", f"data.root={synth.root}", "data.clip_seconds=2.5", "data.num_workers=0"]
    overrides += ["student.base_channels=8", "trainer.max_epochs=1", f"teacher.weights_file={passt_weights}"]
    config = load_config("openmic/east_final-passt", overrides, workdir=work)
    run = pipeline.fit(config, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["teacher"] == "passt" and metrics["system"] == "EAsT_Final" and metrics["steps"] >= 1
    assert np.isfinite(metrics["test"]["mAP"])
    assert len(list((work / "cache" / "embedding").iterdir())) == 1  # the fit read the command's entries


def test_without_the_package_the_error_says_how_to_install_it(monkeypatch):
    from eastmir.teachers.passt import PasstTeacher

    for name in [m for m in sys.modules if m.startswith("hear21passt")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hear21passt", None)  # import hear21passt → ImportError
    with pytest.raises(ConfigError, match=r"install it with `pip install --no-deps hear21passt==0\.0\.26`"):
        PasstTeacher()


def test_missing_weights_name_the_file_and_the_url(tmp_path):
    from eastmir.teachers.passt import PasstTeacher

    with pytest.raises(WeightsUnavailable) as err:
        PasstTeacher(weights_dir=tmp_path)
    assert str(err.value) == (
        f"teacher passt: passt-s-f128-p16-s10-ap.476-swa.pt is not in {tmp_path}; download it from "
        "https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt "
        "into that folder"
    )


def test_the_passt_extra_cannot_replace_torch():
    """The extra declares nothing that depends on torch; hear21passt is installed with --no-deps (Makefile)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {requirement.split("[")[0].split(">")[0].split("=")[0].strip().lower() for requirement in extras["passt"]}
    assert not names & {"torch", "torchaudio", "timm", "torchvision", "hear21passt"}
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install --quiet --no-deps "hear21passt==0.0.26"' in makefile
    assert "eastmir: error: torch" in makefile  # the Makefile's own check that torch is still the pinned one
