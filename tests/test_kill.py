"""kill -9 anywhere, then the same command again: the result of an uninterrupted run, bit for bit.

Each interrupted command runs in its own process and dies by a real SIGKILL
at a chosen point (mid-epoch; between writing a checkpoint's temporary file
and renaming it; after some store entries were written and one was left as a
complete but unrenamed temporary file). Nothing is cleaned up by hand: the
rerun must find its way on, never read a half-written file as valid, and end
where a run that was never interrupted ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# A process that runs an eastmir command and SIGKILLs itself at a chosen point:
#   python -c KILLER <where> <count> <eastmir arguments…>
KILLER = """
import os, signal, sys
where, count, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "mid-epoch":  # after batch 1 of epoch `count`
    from lightning.pytorch.callbacks import Callback
    from eastmir import pipeline

    class KillMidEpoch(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == count and batch_idx == 1:
                die()

    real_fit = pipeline.fit
    pipeline.fit = lambda config, **kw: real_fit(config, **dict(kw, callbacks=[KillMidEpoch()]))
else:  # before renaming the count-th temporary file whose target ends with `where`
    import eastmir.data.store as store
    import eastmir.training.checkpoints as checkpoints

    seen = [0]
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(where):
            seen[0] += 1
            if seen[0] == count:
                die()
        real_replace(src, dst)

    os.replace = replace  # (the one os module, which the store and the checkpoint writer both use)

from eastmir.cli import main
sys.exit(main(argv))
"""


def run(*argv: str, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    """``eastmir argv…`` in a fresh process (with ``kill``: one that dies by SIGKILL at that point)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = [sys.executable, "-m", "eastmir", *argv]
    if kill is not None:
        command = [sys.executable, "-c", KILLER, kill[0], str(kill[1]), *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if kill is not None:
        assert done.returncode == -9, f"expected death by SIGKILL, got {done.returncode}: {done.stderr[-2000:]}"
    else:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


FIT = [
    "trainer.max_epochs=3",
    "data.batch_size=16",
    "threads=1",  # the same float arithmetic in every process, whatever the machine's cores
    "augment={mixup_alpha: 0.3, spec_augment: {freq: 8, time: 20}}",  # random draws every step
]


def fit_command(workdir: Path, name: str) -> list[str]:
    return [
        "fit",
        "--config",
        "synth/east_final",
        "--workdir",
        str(workdir),
        "--no-progress",
        "--set",
        *FIT,
        f"name={name}",
    ]


def finished(run_dir: Path) -> tuple[dict, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics, torch.load(run_dir / metrics["best_checkpoint"], weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(small_synth, small_synth_embeddings, workdir):
    run(*fit_command(workdir, "never-killed"))
    return finished(workdir / "runs" / "never-killed")


def test_the_same_command_in_a_fresh_process_is_bit_for_bit_the_same(uninterrupted, workdir):
    """CPU determinism: same seed, same thread count, same result, whatever else ran before."""
    run(*fit_command(workdir, "never-killed-twice"))
    metrics, state = finished(workdir / "runs" / "never-killed-twice")
    reference, reference_state = uninterrupted
    assert metrics["test"] == reference["test"] and metrics["thresholds"] == reference["thresholds"]
    assert all(torch.equal(state[k], reference_state[k]) for k in reference_state)


@pytest.mark.parametrize(
    "kill", [("mid-epoch", 1), ("last.ckpt", 2)], ids=["mid-epoch", "between-checkpoint-write-and-rename"]
)
def test_fit_killed_then_rerun_equals_an_uninterrupted_run(uninterrupted, workdir, kill):
    name = f"sigkill-{kill[0]}"
    run(*fit_command(workdir, name), kill=kill)
    checkpoints = workdir / "runs" / name / "checkpoints"
    assert not (checkpoints.parent / "metrics.json").exists()
    if kill[0] == "last.ckpt":  # epoch 1's checkpoint was complete on disk, but never renamed into place
        assert len(list(checkpoints.glob(".last.ckpt.*.part"))) == 1
        assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0
    run(*fit_command(workdir, name))  # the same command again
    metrics, state = finished(checkpoints.parent)
    reference, reference_state = uninterrupted
    for key in ("test", "epochs", "steps", "best_checkpoint", "thresholds", "test_per_class_ap"):
        assert metrics[key] == reference[key], key
    assert state.keys() == reference_state.keys()
    assert all(torch.equal(state[k], reference_state[k]) for k in state)
    assert not list(checkpoints.glob(".*.part"))  # the dead writer's temporary file was removed


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from eastmir import pipeline

    root = tmp_path_factory.mktemp("tiny") / "synth"
    return pipeline.prepare("synth", root, {"n_clips": 24, "clip_seconds": 2.0, "seed": 3}, progress=False)


def entries(cache: Path) -> dict[str, bytes]:
    """Every finished store entry under ``cache``: its path below the store and its bytes."""
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*.npy"))}


@pytest.mark.parametrize("stage", ["features", "extract"])
def test_store_building_killed_then_rerun_equals_an_uninterrupted_build(tiny_synth, tmp_path, stage, aisfx_teacher):
    def command(cache: Path) -> list[str]:
        if stage == "features":
            settings = [f"data.root={tiny_synth.root}", f"cache_dir={cache}"]
            return [
                "features",
                "--config",
                "synth/baseline",
                "--workdir",
                str(tmp_path),
                "--no-progress",
                "--set",
                *settings,
            ]
        return [
            "extract",
            "--teacher",
            "aisfx",
            "--dataset",
            str(tiny_synth.root),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ]

    run(*command(tmp_path / "reference"))
    reference = entries(tmp_path / "reference")
    assert len(reference) == 24

    killed = tmp_path / "killed"
    run(*command(killed), kill=(".npy", 10))  # dies with 9 entries in place and the 10th written, not renamed
    assert len(entries(killed)) == 9
    assert len(list(killed.rglob(".*.npy.*.part"))) == 1
    again = run(*command(killed))
    assert "15 stored now, 9 already stored" in again.stdout + again.stderr
    assert entries(killed) == reference  # same paths, same bytes
    assert not list(killed.rglob(".*.part"))
