"""Nested training subsets for limited-data studies (Figure 2 of the ISMIR paper).

``data.train_fraction: 0.25`` trains on a quarter of the training split. The
subset is the first ``ceil(fraction · N)`` clips of one seeded permutation
(``data.subset_seed``) of the training clip ids in sorted order, so, for one
seed, the 25 % subset lies inside the 50 % subset, which lies inside the
75 % one: a larger fraction only adds clips. Validation and test splits are
never subsampled. The permutation depends on the ids alone, not on the
order of the manifest or on which clips turn out unusable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from eastmir.data.manifest import Manifest


def nested_subset(clip_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The clips of ``clip_ids`` a run with ``fraction`` and ``seed`` keeps (in permutation order)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(clip_ids)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    keep = math.ceil(round(fraction * len(ordered), 9))
    return [ordered[i] for i in permutation[:keep]]


def with_train_fraction(manifest: Manifest, fraction: float, seed: int) -> Manifest:
    """``manifest`` with its training split cut to the nested subset (the same object when ``fraction`` is 1)."""
    if fraction >= 1:
        return manifest
    kept = set(nested_subset([c.clip_id for c in manifest.split("train")], fraction, seed))
    clips = [c for c in manifest.clips if c.split != "train" or c.clip_id in kept]
    return dataclasses.replace(manifest, clips=clips)
