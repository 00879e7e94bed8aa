"""Measure on synth what eastmir's deliberate differences from the authors' code change (README, "Differences
from the authors' code").

    python tools/differences_on_synth.py RUN_DIR

``RUN_DIR``: a finished EAsT_KD run on synth (e.g. the study's ``east_kd-musicnn-frac1-seed0``). Over its
validation clips in batches of 16 it compares, for the trained student:

- distance correlation without ε (ours) and with the authors' two ε (1e-12 in every distance's square root,
  1e-9 under the denominator's);
- KD exact (ours) and with the authors' 1e-9 inside both logs;
- the cosine-distance difference over distinct pairs (ours) and over all N² entries (theirs);

and counts what the metric and batching choices touch on its splits: classes of the test split without a
labelled positive or negative (left out of our mAP; theirs: NaN or 0), and training clips ``drop_last``
leaves out per epoch. The authors' formulas here are ports of their code (as the golden arrays in tests/data/golden
check), for this measurement only.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from eastmir.inference.run import load_run
from eastmir.losses.alignment import align_by_factors
from eastmir.losses.cosine_distance_difference import CosineDistanceDifference
from eastmir.losses.distance_correlation import DistanceCorrelationLoss
from eastmir.losses.knowledge_distillation import knowledge_distillation
from eastmir.pipeline.rundata import run_data
from eastmir.training.datamodule import ClipDataset


def their_distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(batch, frames, channels)`` each: mean over frames of 1 − biased dCor², with their ε."""

    def centred(z: torch.Tensor) -> torch.Tensor:
        z = z.transpose(0, 1)  # (frames, batch, channels)
        d = torch.sqrt(((z[:, :, None] - z[:, None]) ** 2).sum(-1) + 1e-12)
        return d - d.mean(1, keepdim=True) - d.mean(2, keepdim=True) + d.mean((1, 2), keepdim=True)

    a, b = centred(x), centred(y)
    xy, xx, yy = (a * b).mean((1, 2)), (a * a).mean((1, 2)), (b * b).mean((1, 2))
    return (1 - xy / torch.sqrt(xx * yy + 1e-9)).mean()


def their_cosine_distance_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over frames and all N² pairs (the diagonal included) of |S_student − S_teacher|."""

    def similarities(z: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.normalize(z.transpose(0, 1), dim=-1)  # (frames, batch, channels)
        return z @ z.transpose(1, 2)

    return (similarities(x) - similarities(y)).abs().mean()


def their_kd(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    zs, zt = s / tau, t / tau
    ps, pt = torch.sigmoid(zs), torch.sigmoid(zt)
    entry = pt * (zt - zs) + torch.log((1 - pt + 1e-9) / (1 - ps + 1e-9))
    return entry[mask].mean() * tau**2


def main(run_dir: str) -> None:
    run = load_run(run_dir)
    system, config = run.system, run.config
    data = run_data(config, progress=False)
    valid = ClipDataset(data.records["valid"], data.input_key, data.input_length, data.input_pad, data.embedding_frames)
    stage = system.stages[-1]
    factors = system.align_factors.get(stage)
    dc, cos = DistanceCorrelationLoss(), CosineDistanceDifference()
    rel_dc, rel_kd, ratio_cos = [], [], []
    with torch.no_grad():
        for start in range(0, len(valid) - 15, 16):
            items = [valid[i] for i in range(start, start + 16)]
            batch = {k: torch.stack([it[k] for it in items]) for k in ("logmel", "embedding", "targets", "mask")}
            out = system.student(batch["logmel"])
            s, t = out.stages[stage].double(), batch["embedding"].double()
            if factors:
                s, t = align_by_factors(s, t, factors)
            ours, theirs = dc(s, t).item(), their_distance_correlation(s, t).item()
            rel_dc.append(abs(ours - theirs) / abs(ours))
            ratio_cos.append(cos(s, t).item() / their_cosine_distance_difference(s, t).item())
            teacher = system.distiller.teacher_head(batch["embedding"]).logits.double()
            logits, mask = out.logits.double(), batch["mask"]
            tau = config.kd.temperature if config.kd else 2.0
            exact, eps = knowledge_distillation(logits, teacher, mask, tau).item(), their_kd(logits, teacher, mask, tau)
            rel_kd.append(abs(exact - eps.item()) / abs(exact))
    print(f"run: {run.directory}; {len(rel_dc)} validation batches of 16")
    print(f"distance correlation, |ours − theirs| / ours: max {max(rel_dc):.1e}, median {np.median(rel_dc):.1e}")
    print(f"KD (τ {tau:g}), |exact − with their ε| / exact: max {max(rel_kd):.1e}, median {np.median(rel_kd):.1e}")
    print(f"cosine-distance difference, ours / theirs: {np.mean(ratio_cos):.4f} (N / (N − 1) = {16 / 15:.4f})")
    for split in ("train", "valid", "test"):
        records = data.records[split]
        targets = np.stack([r.targets for r in records]) > 0.5
        mask = np.stack([r.mask for r in records])
        defined = (targets & mask).any(0) & (~targets & mask).any(0)
        print(f"{split}: {len(records)} clips, {int((~defined).sum())} classes without a labelled positive or negative")
    n_train, batch = len(data.records["train"]), config.data.batch_size
    print(f"drop_last: {n_train % batch} of {n_train} training clips left out of each epoch (a new draw each epoch)")


if __name__ == "__main__":
    main(sys.argv[1])
