"""Teacher ensembles: frame alignment, the stored combined entries, member validation, and training
(EAsT with one regulariser or one per member, TeacherLR and KD) on an ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eastmir.config import load_config
from eastmir.errors import ConfigError
from eastmir.losses.alignment import align_by_factors
from eastmir.losses.distance_correlation import DistanceCorrelationLoss
from eastmir.teachers.ensemble import EnsembleTeacher, align
from eastmir.training.system import EastSystem

ENSEMBLE = "teacher={name: ensemble, members: [{name: aisfx}, {name: musicnn}]}"


def test_align_follows_the_finest_member_and_repeats_clip_level_vectors():
    fine = np.arange(8, dtype=np.float32).reshape(4, 2)  # 4 frames every 0.5 s
    coarse = np.array([[10.0], [20.0]], dtype=np.float32)  # 2 frames every 1.0 s
    clip = np.array([[7.0, 8.0, 9.0]], dtype=np.float32)  # one vector per clip
    out = align([coarse, fine, clip], [1.0, 0.5, None])
    # frame t of the 0.5 s member covers [0.5 t, 0.5 t + 0.5): coarse frame floor(t / 2)
    expected = np.array(
        [
            [10, 0, 1, 7, 8, 9],
            [10, 2, 3, 7, 8, 9],
            [20, 4, 5, 7, 8, 9],
            [20, 6, 7, 7, 8, 9],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    # a coarse member shorter than the clip: its last frame stands in past its end
    np.testing.assert_array_equal(align([coarse[:1], fine], [1.0, 0.5])[:, 0], [10, 10, 10, 10])


def _precomputed(folder, manifest, dim, frames, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for clip in manifest.clips:
        np.save(folder / f"{clip.clip_id}.npy", rng.normal(size=(frames, dim)).astype(np.float32))
    return {"name": "precomputed", "path": str(folder), "dim": dim, "frame_seconds": 2.5 / frames}


def test_ensemble_entries_are_the_aligned_member_entries_and_follow_their_sources(small_synth, tmp_path):
    from eastmir import pipeline
    from eastmir.data.store import Store

    store = Store(tmp_path / "cache")
    a = _precomputed(tmp_path / "a", small_synth, 4, 5, 0)
    b = _precomputed(tmp_path / "b", small_synth, 3, 2, 1)
    teacher = EnsembleTeacher([a, b])
    assert teacher.dim == 7 and teacher.parts == [4, 3] and teacher.frame_seconds == pytest.approx(0.5)
    collection, report = pipeline.extract(teacher, small_synth, store, progress=False)
    assert report.built == len(small_synth.clips) and not report.failed
    clip = small_synth.clips[3].clip_id
    entry = collection.read(report.keys[clip])
    ea, eb = np.load(tmp_path / "a" / f"{clip}.npy"), np.load(tmp_path / "b" / f"{clip}.npy")
    assert entry.shape == (5, 7)
    np.testing.assert_array_equal(entry[:, :4], ea)
    np.testing.assert_array_equal(entry[:, 4:], eb[[0, 0, 0, 1, 1]])  # 0.5 s frames on 1.25 s frames
    # a rerun reads what is stored
    _, again = pipeline.extract(EnsembleTeacher([a, b]), small_synth, store, progress=False)
    assert again.built == 0 and again.cached == len(small_synth.clips)
    # a member's source replaced: that clip's ensemble entry is made again, from the new file
    np.save(tmp_path / "b" / f"{clip}.npy", np.ones((2, 3), dtype=np.float32))
    collection, third = pipeline.extract(EnsembleTeacher([a, b]), small_synth, store, progress=False)
    assert third.built == 1
    np.testing.assert_array_equal(collection.read(third.keys[clip])[:, 4:], np.ones((5, 3)))


def test_a_clip_a_member_lacks_is_left_out_naming_the_member(small_synth, tmp_path):
    from eastmir import pipeline
    from eastmir.data.store import Store

    a = _precomputed(tmp_path / "a", small_synth, 4, 5, 0)
    b = _precomputed(tmp_path / "b", small_synth, 3, 2, 1)
    missing = small_synth.clips[0].clip_id
    (tmp_path / "b" / f"{missing}.npy").unlink()
    _, report = pipeline.extract(
        EnsembleTeacher([a, b]), small_synth, Store(tmp_path / "c"), on_error="skip", progress=False
    )
    assert list(report.failed) == [missing] and report.failed[missing].startswith("precomputed")
    assert report.built == len(small_synth.clips) - 1


def test_members_are_validated_as_teachers(tmp_path):
    def load(*overrides):
        return load_config("synth/east_final", list(overrides), workdir=tmp_path)

    with pytest.raises(ConfigError, match=r"unknown key teacher\.members\[1\]\.layr for teacher musicnn"):
        load("teacher={name: ensemble, members: [{name: aisfx}, {name: musicnn, layr: max_pool}]}")
    with pytest.raises(ConfigError, match=r"teacher\.members\[0\]\.name: unknown teacher 'vggsh'"):
        load("teacher={name: ensemble, members: [{name: vggsh}, {name: aisfx}]}")
    with pytest.raises(ConfigError, match="at least two teachers"):
        load("teacher={name: ensemble, members: [{name: aisfx}]}")
    with pytest.raises(ConfigError, match="one per member"):
        load(ENSEMBLE, "teacher.weights=[1.0]")
    with pytest.raises(ConfigError, match="cannot be a member"):
        load("teacher={name: ensemble, members: [{name: aisfx}, {name: ensemble, members: []}]}")
    config = load(ENSEMBLE, "teacher.combine=separate", "teacher.weights=[3, 1]")
    assert config.teacher.options["weights"] == [3.0, 1.0]
    assert config.teacher.options["members"][1] == {"name": "musicnn"} and config.teacher.is_ensemble


def test_a_refusing_member_refuses_the_ensemble(tmp_path):
    with pytest.raises(ConfigError, match=r"member musicnn: .*trained on magnatagatune"):
        load_config(
            "magnatagatune/east_final-vggish",
            ["teacher={name: ensemble, members: [{name: aisfx}, {name: musicnn, weights: mtt}]}"],
            workdir=tmp_path,
        )


def test_separate_regularisers_weigh_each_members_part(tmp_path):
    config = load_config(
        "synth/east_final", [ENSEMBLE, "teacher.combine=separate", "teacher.weights=[3, 1]"], workdir=tmp_path
    )
    torch.manual_seed(0)
    system = EastSystem(config, 17, embedding_dim=712, embedding_parts=[512, 200]).eval()  # no dropout
    assert len(system.distiller.regularisers) == 2
    logmel, embedding = torch.randn(6, 96, 200), torch.randn(6, 2, 712)
    batch = {"logmel": logmel, "embedding": embedding, "targets": torch.zeros(6, 17), "mask": torch.ones(6, 17) > 0}
    terms = system.losses(batch)
    final, target = align_by_factors(system.student(logmel).stages[-1], embedding, system.distiller.align_factors[2])
    dc = DistanceCorrelationLoss()
    expected = 0.75 * dc(final, target[..., :512]) + 0.25 * dc(final, target[..., 512:])
    assert terms["feature"].item() == pytest.approx(expected.item(), abs=1e-5)
    # concat: one regulariser on the whole concatenation
    whole = EastSystem(load_config("synth/east_final", [ENSEMBLE], workdir=tmp_path), 17, embedding_dim=712)
    assert len(whole.distiller.regularisers) == 1
    with pytest.raises(Exception, match="do not add up"):
        EastSystem(config, 17, embedding_dim=700, embedding_parts=[512, 200])


@pytest.mark.parametrize("combine", ["concat", "separate"])
def test_east_trains_end_to_end_on_aisfx_plus_musicnn(combine, small_synth, small_config, workdir):
    from eastmir import pipeline

    run = pipeline.fit(small_config("east_final", ENSEMBLE, f"teacher.combine={combine}", f"name=ens-{combine}"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["mAP"]) and 0 < metrics["test"]["mAP"] <= 1
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert state["embedding_dim"] == 512 + 200
    assert state["embedding_parts"] == ([512, 200] if combine == "separate" else None)


def test_teacher_lr_and_kd_on_an_ensemble(small_synth, small_config, workdir):
    from eastmir import pipeline

    lr_run = pipeline.fit(small_config("teacher_lr", ENSEMBLE, "name=ens-teacher_lr"))
    from eastmir.training.checkpoints import read_teacher_head

    assert read_teacher_head(lr_run).state["weight"].shape == (17, 712)  # the probe reads the concatenation
    kd = pipeline.fit(
        small_config("kd", ENSEMBLE, "name=ens-kd", f"distillation.kd.teacher_run={lr_run}", "requires=[]")
    )
    assert np.isfinite(json.loads((kd / "metrics.json").read_text())["test"]["mAP"])


def test_extract_command_takes_a_plus_b(small_synth, tmp_path, capsys):
    from eastmir.cli import main

    base = ["extract", "--dataset", str(small_synth.root), "--workdir", str(tmp_path), "--no-progress"]
    assert main([*base, "--teacher", "aisfx+vggsh"]) == 2
    assert "teacher.members[1].name: unknown teacher 'vggsh'" in capsys.readouterr().err
    assert main([*base, "--teacher", "aisfx+musicnn"]) == 0
    assert "aisfx+musicnn-msd (dim 712, frame period 1.161 s)" in capsys.readouterr().out
