"""Write a run directory as test data for "a run saved by an earlier release still loads" (tests/data/runs).

Run it with the release to keep on the path, e.g. for ``v2-east_final``::

    git worktree add /tmp/wt 23098b2
    PYTHONPATH=/tmp/wt/src .venv/bin/python tools/make_saved_run.py tests/data/runs/v2-east_final

It trains ``synth/east_final`` for one epoch on a small synth set and keeps ``config.yaml``,
``metrics.json``, the best checkpoint and the logits of a seeded input.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from eastmir import load_run, pipeline
from eastmir.config import load_config

work = Path(tempfile.mkdtemp())
pipeline.prepare("synth", work / "data" / "synth", {"n_clips": 48, "clip_seconds": 2.0, "seed": 3}, progress=False)
cfg = load_config("synth/east_final", ["trainer.max_epochs=1", "data.batch_size=8", "name=v2-east_final"], workdir=work)
run_dir = pipeline.fit(cfg, progress=False)
run = load_run(run_dir)
x = torch.randn(3, 96, 101, generator=torch.Generator().manual_seed(0))
out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
shutil.copy(run_dir / "config.yaml", out)
shutil.copy(run_dir / "metrics.json", out)
(out / "checkpoints").mkdir()
best = run.checkpoint
shutil.copy(best, out / "checkpoints" / best.name)
np.save(out / "logits_of_seeded_input.npy", run.logits(x).numpy())
print(out, best.name)
