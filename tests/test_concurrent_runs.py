"""Many processes on one store, as a study runs them: fits on a complete store never wait or refuse each other,
and two extractions into an empty store both finish with every entry stored once, equal to one process's."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from eastmir import pipeline


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    """24 clips of 2 s: three to validate on, quick for eight processes on two cores."""
    root = tmp_path_factory.mktemp("tiny") / "synth"
    return pipeline.prepare("synth", root, {"n_clips": 24, "clip_seconds": 2.0, "seed": 11}, progress=False)


def eastmir(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "eastmir", *args, "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(processes: list[subprocess.Popen]) -> list[str]:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    return outputs


def entry_digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.npy"))}


def test_two_extractions_into_an_empty_store_both_finish_and_store_each_entry_once(tiny_synth, tmp_path):
    alone = finish([eastmir("extract", "--teacher", "aisfx", "--dataset", str(tiny_synth.root), "--workdir",
                            str(tmp_path / "alone"))])[0]  # fmt: skip
    assert "24 stored now, 0 already stored" in alone
    together = finish(
        [eastmir("extract", "--teacher", "aisfx", "--dataset", str(tiny_synth.root), "--workdir", str(tmp_path / "w"))]
        * 1
        + [
            eastmir(
                "extract", "--teacher", "aisfx", "--dataset", str(tiny_synth.root), "--workdir", str(tmp_path / "w")
            )
        ]
    )
    counts = [tuple(map(int, re.search(r"(\d+) stored now, (\d+) already stored", o).groups())) for o in together]
    assert sum(built for built, _ in counts) == 24, together  # every entry computed by one of them only
    assert all(built + cached == 24 for built, cached in counts)
    assert entry_digests(tmp_path / "w" / "cache" / "embedding") == entry_digests(
        tmp_path / "alone" / "cache" / "embedding"
    )


def test_eight_fits_started_together_on_a_complete_store_all_finish(tiny_synth, tmp_path):
    work = str(tmp_path)
    root = str(tiny_synth.root)
    finish([eastmir("extract", "--teacher", "aisfx", "--dataset", root, "--workdir", work)])
    finish([eastmir("features", "--config", "synth/east_final", "--workdir", work, "--set", f"data.root={root}")])
    before = entry_digests(tmp_path / "cache")
    settings = [f"data.root={root}", "trainer.max_epochs=1", "data.num_workers=0", "data.batch_size=8"]
    fits = [
        eastmir(
            "fit", "--config", "synth/east_final", "--workdir", work, "--set", f"name=run{i}", f"seed={i}", *settings
        )
        for i in range(8)
    ]
    outputs = finish(fits)
    assert not any("waiting for it" in output for output in outputs)  # a complete store is only read
    assert all((tmp_path / "runs" / f"run{i}" / "metrics.json").is_file() for i in range(8))
    assert entry_digests(tmp_path / "cache") == before


def test_a_study_with_two_jobs_trains_kd_after_its_teacher_lr_and_prints_each_result(tiny_synth, tmp_path, capsys):
    """``eastmir experiment limited-data --jobs 2``: two runs at once in their own processes; KD starts only once
    the TeacherLR run of its seed has finished; each run prints its score and wall time as it ends."""
    from eastmir.cli import main

    root = str(tiny_synth.root)
    argv = ["experiment", "limited-data", "--systems", "synth/baseline", "synth/kd", "--fractions", "1.0"]
    argv += ["--seeds", "0", "1", "--jobs", "2", "--workdir", str(tmp_path), "--no-progress"]
    argv += ["--set", f"data.root={root}", "trainer.max_epochs=1", "data.num_workers=0", "data.batch_size=8"]
    argv += ["teacher_lr.trainer.max_epochs=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for seed in (0, 1):
        probe = next(i for i, line in enumerate(lines) if line.startswith(f"finished teacher_lr-frac1-seed{seed} in "))
        kd = next(i for i, line in enumerate(lines) if line.startswith(f"=== started kd-frac1-seed{seed} "))
        assert probe < kd, out
    finished = [line for line in lines if line.startswith("finished ")]
    assert len(finished) == 6 and all(re.search(r" in \d+ s: test mAP \d\.\d{3}", line) for line in finished)
    assert "Paired differences against the Baseline" in out
