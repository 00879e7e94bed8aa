"""Shared fixtures: a small rendered ``synth`` dataset and its caches, built
once per session in a temporary folder (never written into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))

SMALL_SYNTH = {"n_clips": 96, "clip_seconds": 2.5, "sample_rate": 16000, "seed": 7}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eastmir-work")


@pytest.fixture(scope="session")
def small_synth(workdir):
    from eastmir.data.datasets.synth import prepare

    return prepare(workdir / "data" / "synth", progress=False, **SMALL_SYNTH)


@pytest.fixture(scope="session")
def aisfx_teacher():
    """The real aiSFX weights, from the PyPI wheel (cached in $EASTMIR_CACHE or ~/.cache/eastmir)."""
    from eastmir.teachers.aisfx import AisfxTeacher

    return AisfxTeacher()


@pytest.fixture(scope="session")
def small_synth_embeddings(small_synth, aisfx_teacher, workdir):
    from eastmir.teachers.extract import extract_embeddings

    return extract_embeddings(aisfx_teacher, small_synth, workdir / "cache", batch_size=16, progress=False)
