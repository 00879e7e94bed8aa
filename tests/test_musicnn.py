"""musicnn, offline: our tensor-bundle reader, the port's use of every weight, its tags and embeddings."""

import shutil

import numpy as np
import pytest
import torch

from eastmir.config import load_config
from eastmir.errors import ConfigError, WeightsUnavailable
from eastmir.teachers.musicnn import (
    MUSICNN_WEIGHTS,
    OPTIMISER_STATE,
    PATCH,
    MusicnnNet,
    MusicnnTeacher,
    tensorflow_state,
)
from eastmir.teachers.musicnn_tags import MTT_TAGS
from eastmir.teachers.tf_bundle import read_bundle
from eastmir.teachers.weights import fetch_wheel_files


@pytest.fixture(scope="module")
def bundles():
    """(index, data) of both checkpoints, read out of the wheel (fetched once into $EASTMIR_CACHE)."""
    out = {}
    for weights, spec in MUSICNN_WEIGHTS.items():
        files = fetch_wheel_files(spec)
        out[weights] = tuple(files[m] for m, _ in spec.files)
    return out


@pytest.fixture(scope="module")
def mtt():
    return MusicnnTeacher(weights="mtt")


@pytest.mark.parametrize("weights", ["msd", "mtt"])
def test_every_checkpoint_variable_is_used_and_every_parameter_set(bundles, weights):
    everything = read_bundle(*bundles[weights])
    trainable = {k: v for k, v in everything.items() if not any(s in k for s in OPTIMISER_STATE)}
    assert len(everything) > len(trainable) == 64  # optimiser slots exist and are left out
    state = tensorflow_state(trainable)
    net = MusicnnNet()
    assert set(state) == set(net.state_dict())  # every parameter and statistic of the port is set
    net.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in net.parameters()) == 787_159
    with pytest.raises(WeightsUnavailable, match=r"left unused: \['extra/kernel'\]"):
        tensorflow_state({**trainable, "extra/kernel": np.zeros(3, np.float32)})
    missing = dict(trainable)
    missing.pop("dense_1/bias")
    with pytest.raises(WeightsUnavailable, match="no variable dense_1/bias"):
        tensorflow_state(missing)


def test_a_corrupted_byte_is_refused_naming_the_file(bundles, tmp_path):
    index, data = bundles["msd"]
    for name, source in (("bundle.index", index), ("bundle.data-00000-of-00001", data)):
        shutil.copy(source, tmp_path / name)
    clean = read_bundle(tmp_path / "bundle.index", skip=OPTIMISER_STATE)
    assert set(clean) == set(read_bundle(index, data, skip=OPTIMISER_STATE))
    blob = bytearray((tmp_path / "bundle.data-00000-of-00001").read_bytes())
    blob[1000] ^= 0x01
    (tmp_path / "bundle.data-00000-of-00001").write_bytes(bytes(blob))
    with pytest.raises(WeightsUnavailable, match=r"bundle\.data-00000-of-00001: tensor .* fails its checksum"):
        read_bundle(tmp_path / "bundle.index")
    shutil.copy(data, tmp_path / "bundle.data-00000-of-00001")
    blob = bytearray((tmp_path / "bundle.index").read_bytes())
    blob[100] ^= 0x01
    (tmp_path / "bundle.index").write_bytes(bytes(blob))
    with pytest.raises(WeightsUnavailable, match=r"bundle\.index: a block of the checkpoint index fails its checksum"):
        read_bundle(tmp_path / "bundle.index")


def render(label: str, seed: int, seconds: float = 6.0) -> np.ndarray:
    from eastmir.data.datasets.synth import SynthConfig, render_clip

    config = SynthConfig(
        n_clips=4, clip_seconds=seconds, min_instruments=1, max_instruments=1, classes=[label], seed=seed
    )
    return render_clip(config, 0)[0]


# synth class → the MTT tags that name it
TAGS_OF = {
    "piano": {"piano"},
    "guitar": {"guitar"},
    "violin": {"violin"},
    "drums": {"drums", "beat", "beats"},
    "flute": {"flute"},
    "cello": {"cello"},
}


def test_mtt_tags_name_the_instrument_of_single_instrument_clips(mtt):
    hits, total = [], 0
    for label, tags in TAGS_OF.items():
        for seed in range(3):
            probs = mtt.tag(torch.from_numpy(render(label, seed))[None])[0].mean(0)
            top5 = {MTT_TAGS[i] for i in torch.argsort(probs, descending=True)[:5]}
            hits.append(bool(top5 & tags))
            total += 1
    rate = sum(hits) / total
    print(f"instrument tag in the top five for {sum(hits)} of {total} clips ({rate:.0%})")
    assert rate >= 0.75


@pytest.mark.parametrize("layer,dim", [("penultimate", 200), ("max_pool", 753), ("mean_pool", 753)])
def test_embeddings_are_finite_on_loud_and_silent_audio(mtt, layer, dim):
    mtt.layer, mtt.dim = layer, dim
    seconds = 7.0  # 437 frames: two whole patches, the rest dropped
    loud = torch.from_numpy(np.clip(np.random.default_rng(0).standard_normal((1, int(16000 * seconds))), -1, 1) * 30)
    silent = torch.zeros(1, int(16000 * seconds))
    out = mtt.embed(torch.cat([loud.float(), silent]))
    assert out.shape == (2, 2, dim) and torch.isfinite(out).all()
    short = mtt.embed(torch.zeros(1, 16000))  # shorter than a patch: repeated to one
    assert short.shape == (1, 1, dim)
    assert mtt.frame_seconds == pytest.approx(PATCH * 256 / 16000)
    mtt.layer, mtt.dim = "penultimate", 200


def test_mtt_weights_refuse_to_teach_magnatagatune(tmp_path):
    with pytest.raises(ConfigError, match="musicnn's mtt weights were trained on magnatagatune"):
        load_config("magnatagatune/east_final-vggish", ["teacher={name: musicnn, weights: mtt}"], workdir=tmp_path)
    forced = load_config(
        "magnatagatune/east_final-vggish",
        ["teacher={name: musicnn, weights: mtt, allow_test_leakage: true}"],
        workdir=tmp_path,
    )
    assert forced.teacher.options["allow_test_leakage"]
    assert load_config("magnatagatune/east_final-vggish", ["teacher={name: musicnn}"], workdir=tmp_path)
