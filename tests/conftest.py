"""Shared fixtures: a small rendered ``synth`` dataset, its store and helper
factories, built once per session in temporary folders (never written into
the repository). Tests get helpers as fixtures; nothing imports from
``tests/``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SMALL_SYNTH = {"n_clips": 96, "clip_seconds": 2.5, "sample_rate": 16000, "seed": 7}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real files checked into tests/data (OpenMIC class map, splits' README, one clip)."""
    return Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eastmir-work")


@pytest.fixture(scope="session")
def small_synth(workdir):
    """96 clips of 2.5 s, prepared once at ``workdir/data/synth`` (the synth configs' default root)."""
    from eastmir import pipeline

    return pipeline.prepare("synth", workdir / "data" / "synth", SMALL_SYNTH, progress=False)


@pytest.fixture(scope="session")
def store(workdir):
    from eastmir.data.store import Store

    return Store(workdir / "cache")


@pytest.fixture(scope="session")
def aisfx_teacher():
    """The real aiSFX weights, from the PyPI wheel (fetched once into $EASTMIR_CACHE or ~/.cache/eastmir)."""
    from eastmir.teachers.aisfx import AisfxTeacher

    return AisfxTeacher()


@pytest.fixture(scope="session")
def small_synth_embeddings(small_synth, aisfx_teacher, store):
    """``(collection, report)`` of the aiSFX embeddings of every small-synth clip."""
    from eastmir import pipeline

    return pipeline.extract(aisfx_teacher, small_synth, store, batch_size=16, progress=False)


@pytest.fixture
def small_config(workdir):
    """``small_config(name, *overrides, workdir=…)``: a synth config trained for one epoch on the small set."""
    from eastmir.config import load_config

    def make(name: str, *overrides: str, workdir: Path = workdir):
        base = ["trainer.max_epochs=1", "data.batch_size=16", *overrides]
        return load_config(f"synth/{name}", base, workdir=workdir)

    return make


@pytest.fixture
def fake_teacher_run():
    """``fake_teacher_run(run_dir, num_classes, dim)``: a finished TeacherLR run as fit writes it."""

    def make(run_dir: Path, num_classes: int, dim: int) -> Path:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        state = {
            "student.head.weight": torch.randn(num_classes, dim, generator=g) * 0.1,
            "student.head.bias": torch.zeros(num_classes),
        }
        torch.save({"state_dict": state}, run_dir / "checkpoints" / "best.ckpt")
        blob = {"student": "linear_probe", "best_checkpoint": "checkpoints/best.ckpt"}
        (run_dir / "metrics.json").write_text(json.dumps(blob))
        return run_dir

    return make


@pytest.fixture(scope="session")
def short_run(small_synth, small_synth_embeddings, workdir):
    """A finished synth Baseline run of two epochs (``{workdir}/runs/short_run``), for the fault tests."""
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config("synth/baseline", ["name=short_run", "trainer.max_epochs=2"], workdir=workdir)
    return pipeline.fit(config, progress=False)


@pytest.fixture(scope="session")
def litert_converter():
    """The LiteRT converter's Python (set up once per machine in the shared cache, as a user's first
    ``export --format litert`` sets it up), named by ``$EASTMIR_CONVERTER_PYTHON`` for the session so that
    tests with a cache of their own reuse it."""
    from eastmir.inference.converter_env import converter_python

    python = str(converter_python())
    before = os.environ.get("EASTMIR_CONVERTER_PYTHON")
    os.environ["EASTMIR_CONVERTER_PYTHON"] = python
    yield python
    if before is None:
        os.environ.pop("EASTMIR_CONVERTER_PYTHON", None)
    else:
        os.environ["EASTMIR_CONVERTER_PYTHON"] = before
