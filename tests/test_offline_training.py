"""Training needs only what it uses: on a store holding every clip's embedding, every system with a teacher
trains with the teacher's weights hidden and the package index unreachable; ``extract`` in that state stops with
one line saying how to bring the weights."""

from __future__ import annotations

import json

import pytest

from eastmir import pipeline
from eastmir.cli import main
from eastmir.config import load_config

SYSTEMS = ["teacher_lr", "kd", "east_kd", "east_final", "east_final_unbiased", "east_all", "east_cos_diff"]
SYSTEMS += ["east_dc", "east_dc_linear", "east_fitnet", "east_fitnet_linear"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A rendered set whose aiSFX embeddings ``eastmir extract`` stored (with the weights at hand)."""
    base = tmp_path_factory.mktemp("offline")
    synth = pipeline.prepare("synth", base / "data", {"n_clips": 24, "clip_seconds": 2.0, "seed": 13}, progress=False)
    work = base / "work"
    argv = ["extract", "--teacher", "aisfx", "--dataset", str(synth.root), "--workdir", str(work), "--no-progress"]
    assert main(argv) == 0
    return synth, work, argv


def go_offline(monkeypatch, cache) -> None:
    """No weights on this machine and no package index: an empty cache, pip pointed at a closed port."""
    monkeypatch.setenv("EASTMIR_CACHE", str(cache))
    monkeypatch.delenv("EASTMIR_WEIGHTS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    go_offline(monkeypatch, tmp_path / "empty-cache")


def test_every_system_with_a_teacher_trains_from_stored_embeddings_offline(extracted, offline, capsys):
    synth, work, _ = extracted
    stored = next((work / "cache" / "embedding").glob("aisfx-*"))
    for system in SYSTEMS:
        overrides = [f"data.root={synth.root}", "trainer.max_epochs=1", "data.num_workers=0", "data.batch_size=8"]
        run = pipeline.fit(load_config(f"synth/{system}", overrides, workdir=work), progress=False)
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["teacher"] == "aisfx" and metrics["steps"] >= 1, system
        out = capsys.readouterr().out
        assert f"aisfx: every clip's embedding is stored ({stored}); the teacher is not loaded" in out, system
    assert not (work.parent / "empty-cache" / "weights").exists()  # nothing was fetched, nothing tried to be
    assert len(list((work / "cache" / "embedding").iterdir())) == 1  # the one collection extract stored


def test_an_ensembles_embeddings_are_found_offline_too(extracted, tmp_path, monkeypatch, capsys):
    """``extract --teacher musicnn+aisfx`` records the ensemble's request and each member's; offline, a fit with
    that ensemble builds neither member."""
    synth, work, argv = extracted
    argv = [*argv[:2], "musicnn+aisfx", *argv[3:]]
    assert main(argv) == 0
    capsys.readouterr()
    go_offline(monkeypatch, tmp_path / "empty-cache")  # after extracting: the fit alone is offline
    members = "teacher={name: ensemble, members: [{name: musicnn}, {name: aisfx}]}"
    overrides = [f"data.root={synth.root}", "trainer.max_epochs=1", "data.num_workers=0", members, "name=ens"]
    run = pipeline.fit(load_config("synth/east_final", overrides, workdir=work), progress=False)
    assert json.loads((run / "metrics.json").read_text())["teacher"] == "musicnn+aisfx"
    assert "musicnn+aisfx: every clip's embedding is stored" in capsys.readouterr().out


def test_extract_in_that_state_says_how_to_bring_the_weights(extracted, offline, tmp_path, capsys):
    _, _, argv = extracted
    argv = [*argv[:-3], "--workdir", str(tmp_path / "other"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eastmir: error: ")
    assert "offline? Run `pip download --no-deps aisfx==0.1.2 -d DIR` elsewhere and pass --weights-dir DIR" in err


def test_a_store_without_the_record_or_with_other_settings_builds_the_teacher(extracted, tmp_path, monkeypatch):
    """Another request (other options) is not answered by the record: the teacher is built (and, offline, says
    what it needs), never a collection made with other settings."""
    from eastmir.config import TeacherSection

    synth, work, _ = extracted
    manifest = pipeline.load_dataset(synth.root)
    store = pipeline.store_at(work / "cache")
    found = pipeline.recorded_embeddings(TeacherSection.model_validate({"name": "aisfx"}), manifest, store)
    assert found is not None and found.period == pytest.approx(1.161, abs=1e-3) and found.parts is None
    assert len(found.filled.report.keys) == 24
    other = TeacherSection.model_validate({"name": "aisfx", "weights_file": str(tmp_path / "mine.pth")})
    assert pipeline.recorded_embeddings(other, manifest, store) is None
    record = next((work / "cache" / "embedding").glob("aisfx-*")) / "requests.json"
    saved = record.read_text()
    record.unlink()
    try:
        assert pipeline.recorded_embeddings(TeacherSection.model_validate({"name": "aisfx"}), manifest, store) is None
    finally:
        record.write_text(saved)
