"""The paper's teachers through their packages, wired end to end without a network.

Each package's own network gets seeded random weights, saved as a local
weights file; the teacher loads it (``weights_file``) and ``extract`` runs
it over rendered 16 kHz clips. Checked: the entry shapes and frame counts
(which also show that the audio reached the network at the teacher's own
sample rate), equality with the package's own API on the same audio,
batching (batch 4 = batch 1), the published parameter counts, and the
messages for missing or wrong weights. PaSST has its own file, tests/test_passt.py.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from eastmir import pipeline
from eastmir.audio import load_audio
from eastmir.data.store import Store
from eastmir.errors import WeightsUnavailable


@pytest.fixture(scope="module")
def clips(small_synth):
    """Six 2.5 s clips of the small synth set (16 kHz)."""
    return dataclasses.replace(small_synth, clips=small_synth.clips[:6])


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random learned weights and BatchNorm statistics; fixed buffers (STFT kernels, mel bases) kept."""
    g = torch.Generator().manual_seed(seed)
    learned = {name for name, _ in module.named_parameters()}
    state = {}
    for key, value in module.state_dict().items():
        if key in learned or key.endswith("running_mean"):
            value = torch.randn(value.shape, generator=g) * 0.05
        elif key.endswith("running_var"):
            value = torch.rand(value.shape, generator=g) + 0.5
        state[key] = value
    return state


def _extract(teacher, clips, tmp_path, batch_size):
    collection, report = pipeline.extract(
        teacher, clips, Store(tmp_path / f"cache{batch_size}"), batch_size, progress=False
    )
    assert report.built == len(clips.clips) and not report.failed
    return {c.clip_id: collection.read(report.keys[c.clip_id]).copy() for c in clips.clips}


def _batching_does_not_matter(teacher, clips, tmp_path):
    one, four = _extract(teacher, clips, tmp_path, 1), _extract(teacher, clips, tmp_path, 4)
    for clip in one:
        np.testing.assert_allclose(four[clip], one[clip], atol=1e-5)
    return one


# --------------------------------------------------------------------------------------------- VGGish


@pytest.fixture(scope="module")
def vggish_files(tmp_path_factory):
    from torchvggish import torchvggish as network

    folder = tmp_path_factory.mktemp("vggish")
    torch.manual_seed(0)
    torch.save(_random_state(network._vgg(postprocess=False), 0), folder / "weights.pth")
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.normal(size=(128, 128)) * 0.3, "pca_means": rng.normal(size=(128,)) * 0.01}
    torch.save(pca, folder / "pca.pth")  # numpy arrays, as the published file holds
    return folder


def test_vggish_wiring(vggish_files, clips, tmp_path):
    from torchvggish import torchvggish as network
    from torchvggish import vggish_input

    from eastmir.teachers.vggish import VggishTeacher

    teacher = VggishTeacher(weights_file=vggish_files / "weights.pth", pca_file=vggish_files / "pca.pth")
    assert teacher.parameter_count == 72_141_184  # the published 72.1 M
    entries = _batching_does_not_matter(teacher, clips, tmp_path)
    clip = clips.clips[2]
    entry = entries[clip.clip_id]
    assert entry.shape == (2, 128)  # 2.5 s at 16 kHz: two whole 0.96 s examples
    # the package's network and front end on the same audio, with the PCA and quantisation written out here
    net = network._vgg(postprocess=False)
    net.load_state_dict(torch.load(vggish_files / "weights.pth", weights_only=True))
    net.eval()
    audio = load_audio(clips.audio_file(clip), 16000)
    with torch.no_grad():
        raw = net(vggish_input.waveform_to_examples(audio, 16000, return_tensor=True).detach()).numpy()
    pca = torch.load(vggish_files / "pca.pth", weights_only=False)
    whitened = (pca["pca_eigen_vectors"] @ (raw.T - pca["pca_means"][:, None])).T
    quantised = np.round((np.clip(whitened, -2, 2) + 2) * 255 / 4)
    np.testing.assert_allclose(entry, (quantised - 128) / 256, atol=1 / 256 + 1e-6)
    assert np.mean(np.isclose(entry, (quantised - 128) / 256, atol=1e-6)) > 0.99  # off by one level only at ties
    # without postprocessing: the network's raw 128-d output
    raw_teacher = VggishTeacher(postprocess=False, weights_file=vggish_files / "weights.pth")
    with torch.no_grad():
        np.testing.assert_allclose(raw_teacher.embed(torch.from_numpy(audio)[None])[0].numpy(), raw, atol=1e-5)


# --------------------------------------------------------------------------------------------- OpenL3


@pytest.fixture(scope="module")
def openl3_file(tmp_path_factory):
    from torchopenl3.models import PytorchOpenl3

    path = tmp_path_factory.mktemp("openl3") / "weights.pth.tar"
    torch.save(_random_state(PytorchOpenl3("music", "mel256", 512), 1), path)
    return path


def test_openl3_wiring(openl3_file, clips, tmp_path):
    import torchopenl3
    from torchopenl3.models import PytorchOpenl3

    from eastmir.teachers.openl3 import Openl3Teacher

    teacher = Openl3Teacher(weights_file=openl3_file)
    assert round(teacher.parameter_count / 1e6, 2) == 4.69  # the published 4.69 M
    entries = _batching_does_not_matter(teacher, clips, tmp_path)
    clip = clips.clips[1]
    # 2.5 s at 48 kHz, centred (half a window in front), padded to whole 0.96 s hops: 4 windows
    assert entries[clip.clip_id].shape == (4, 512)
    net = PytorchOpenl3("music", "mel256", 512)
    net.load_state_dict(torch.load(openl3_file, weights_only=True))
    net.eval()
    audio = load_audio(clips.audio_file(clip), 48000)
    theirs, _ = torchopenl3.get_audio_embedding(
        audio, 48000, model=net, hop_size=0.96, center=True, sampler="julian", verbose=False
    )
    np.testing.assert_allclose(entries[clip.clip_id], theirs[0].numpy() - 2.24, atol=1e-4)


# --------------------------------------------------------------------------------------------- PANNs


@pytest.fixture(scope="module")
def panns_file(tmp_path_factory):
    from eastmir.teachers.panns import panns_models

    net = panns_models().Cnn14(32000, 1024, 320, 64, 50, 14000, 527)
    path = tmp_path_factory.mktemp("panns") / "Cnn14.pth"
    torch.save({"model": _random_state(net, 2), "iteration": 0}, path)  # the published checkpoint's layout
    return path


def test_panns_wiring(panns_file, clips, tmp_path):
    from eastmir.teachers.panns import PannsTeacher, panns_models

    teacher = PannsTeacher(weights_file=panns_file)
    assert round(teacher.parameter_count / 1e6, 1) == 79.7  # the published 79.7 M (without the AudioSet head)
    entries = _batching_does_not_matter(teacher, clips, tmp_path)
    clip = clips.clips[4]
    assert entries[clip.clip_id].shape == (1, 2048)  # one vector per clip
    net = panns_models().Cnn14(32000, 1024, 320, 64, 50, 14000, 527)
    net.load_state_dict(torch.load(panns_file, weights_only=True)["model"])
    net.eval()
    audio = torch.from_numpy(load_audio(clips.audio_file(clip), 32000))[None]
    with torch.no_grad():
        theirs = net(audio, None)["embedding"][0].numpy()
    np.testing.assert_allclose(entries[clip.clip_id][0], theirs, atol=1e-5)
    assert "panns_inference" not in __import__("sys").modules  # the package's top level (its wget) never ran


# --------------------------------------------------------------------------------------------- weights


def test_missing_weights_name_the_file_the_folder_and_the_url(tmp_path, monkeypatch):
    from eastmir.teachers import vggish
    from eastmir.teachers.vggish import VggishTeacher

    with pytest.raises(WeightsUnavailable) as err:
        VggishTeacher(weights_dir=tmp_path)
    assert str(err.value) == (
        f"teacher vggish: vggish-10086976.pth is not in {tmp_path}; download it from "
        "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth into that folder"
    )
    # no folder given and no network: the cache to put it in and the URL
    monkeypatch.setenv("EASTMIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EASTMIR_WEIGHTS", raising=False)
    unreachable = dataclasses.replace(vggish.WEIGHTS, url="http://127.0.0.1:9/vggish-10086976.pth")
    monkeypatch.setattr(vggish, "WEIGHTS", unreachable)
    with pytest.raises(WeightsUnavailable, match=r"could not be downloaded .*put it in .*cache/weights"):
        VggishTeacher()


def test_a_file_that_is_not_the_published_one_is_refused(tmp_path, vggish_files):
    from eastmir.teachers.vggish import VggishTeacher

    (tmp_path / "vggish-10086976.pth").write_bytes((vggish_files / "weights.pth").read_bytes())
    with pytest.raises(WeightsUnavailable, match=r"sha256-prefix .* does not match the published 10086976"):
        VggishTeacher(weights_dir=tmp_path)


def test_weights_holding_other_objects_are_not_unpickled(tmp_path):
    from eastmir.teachers.vggish import VggishTeacher

    bad = tmp_path / "evil.pth"
    torch.save({"state": Fraction(1, 3)}, bad)  # any class at all: unpickling it could run code
    with pytest.raises(WeightsUnavailable, match=r"\(it holds fractions.Fraction\); eastmir loads tensors only"):
        VggishTeacher(weights_file=bad, postprocess=False)
