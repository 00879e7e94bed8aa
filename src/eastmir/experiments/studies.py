"""The papers' studies as commands.

- :func:`limited_data` (``eastmir experiment limited-data``, Figure 2 of the
  ISMIR paper): every system × teacher at nested seeded fractions of the
  training split (:mod:`eastmir.data.subsets`) and several seeds. A run's
  seed also picks its subset (``data.subset_seed``), so each seed is one
  draw of nested subsets; KD reads the TeacherLR head trained on the same
  subset.
- :func:`generalisation` (``eastmir experiment generalisation``, Table 1 of
  the compression paper): a student trained on MagnaTagATune scores
  OpenMIC's clips without any training; each shared instrument's score is
  the highest of its MagnaTagATune tags (:data:`MTAT_TO_OPENMIC`), and the
  masked mAP is taken over those instruments.
- :func:`reproduce` (``eastmir reproduce openmic|magnatagatune``): every run
  of a recipe's Table 1 grid, then its report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eastmir.config import load_config, on_training_share, probe_note, run_tables, with_teacher
from eastmir.errors import ConfigError
from eastmir.experiments.parallel import Job, run_jobs
from eastmir.fetch import atomic_write

FRACTIONS = (0.25, 0.5, 0.75, 1.0)

# OpenMIC-2018 instrument → the MagnaTagATune top-50 tags that name it. The compression paper speaks of
# nine overlapping labels without listing them; these eight are the instruments both vocabularies name
# (OpenMIC's "synthesizer" is MTAT's "synth"; its "voice" is every MTAT tag for a singing voice).
# OpenMIC's other twelve instruments have no MTAT tag.
MTAT_TO_OPENMIC: dict[str, tuple[str, ...]] = {
    "cello": ("cello",),
    "drums": ("drums",),
    "flute": ("flute",),
    "guitar": ("guitar",),
    "piano": ("piano",),
    "synthesizer": ("synth",),
    "violin": ("violin",),
    "voice": ("vocal", "vocals", "voice", "singing", "male vocal", "female vocal", "male voice", "female voice"),
}


def limited_data(
    systems: Sequence[str],
    teachers: Sequence[str | None],
    workdir: str | Path,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    progress: bool = True,
    n_jobs: int = 1,
) -> list[Path]:
    """Train every system (config names, e.g. ``synth/east_final``) with every teacher at every fraction and
    seed; a system without a teacher (Baseline) runs once per fraction and seed; ``n_jobs`` at a time
    (:mod:`eastmir.experiments.parallel`). Returns the run directories."""
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"--fractions: {f} is not in (0, 1]")
    jobs: dict[str, Job] = {}

    def add(name: str, teacher: str | None, fraction: float, seed: int) -> str:
        config = load_config(name, list(overrides), workdir=workdir, shared=True)
        if teacher and config.teacher:
            config = with_teacher(config, teacher)
        config = on_training_share(config, fraction, seed, name)
        if config.name not in jobs:
            after = tuple(add(needed, teacher, fraction, seed) for needed in config.requires)
            jobs[config.name] = Job(config, after, probe_note(config))
        return config.name

    order = []
    for name in systems:
        has_teacher = bool(load_config(name, list(overrides), workdir=workdir, shared=True).teacher)
        for teacher in (teachers or [None]) if has_teacher else [None]:
            for fraction in fractions:
                for seed in seeds:
                    order.append(add(name, teacher, fraction, seed))
    done = run_jobs(list(jobs.values()), n_jobs, progress)
    return list(dict.fromkeys(done[name] for name in order))


def mapped_scores(probs: np.ndarray, source_classes: Sequence[str], mapping: dict[str, Sequence[str]]) -> np.ndarray:
    """``probs (clips, source classes)`` → ``(clips, len(mapping))``: each target's highest mapped source score."""
    index = {c: i for i, c in enumerate(source_classes)}
    missing = sorted({s for sources in mapping.values() for s in sources} - set(index))
    if missing:
        raise ConfigError(f"the run has no class {', '.join(missing)} for the label mapping")
    return np.stack([probs[:, [index[s] for s in sources]].max(1) for sources in mapping.values()], axis=1)


def generalisation(
    run_dir: str | Path,
    dataset_root: str | Path,
    mapping: dict[str, Sequence[str]] | None = None,
    split: str = "test",
    progress: bool = True,
) -> dict[str, Any]:
    """Score a trained student on another prepared dataset's ``split`` without training; masked mAP over the
    mapped classes (``mapping``: target class → source classes; default :data:`MTAT_TO_OPENMIC`). Written
    to ``<run>/generalisation-<dataset>.json`` and returned."""
    import torch

    from eastmir.data.manifest import load_manifest
    from eastmir.inference.predict import Failure, load_student
    from eastmir.metrics import masked_metrics, per_class_average_precision

    mapping = dict(mapping or MTAT_TO_OPENMIC)
    manifest = load_manifest(dataset_root)
    unknown = sorted(set(mapping) - set(manifest.classes))
    if unknown:
        raise ConfigError(f"{dataset_root}: the dataset has no class {', '.join(unknown)} (mapping targets)")
    clips = manifest.split(split)
    if not clips:
        raise ConfigError(f"{dataset_root}: no {split} clips")
    student = load_student(run_dir)
    files = [manifest.audio_file(c) for c in clips]
    probs, kept = [], []
    for clip, result in zip(clips, student.predict_files(files, progress=progress)):
        if isinstance(result, Failure):
            print(f"warning: {result.source}: left out ({result.reason})")
            continue
        probs.append(result.probabilities)
        kept.append(clip)
    scores = mapped_scores(np.stack(probs), student.classes, mapping)
    columns = [manifest.classes.index(t) for t in mapping]
    labels, mask = manifest.labels(kept)
    targets, mask = labels[:, columns], mask[:, columns]
    result = masked_metrics(torch.from_numpy(scores), torch.from_numpy(targets), torch.from_numpy(mask))
    per_class = per_class_average_precision(scores, targets, mask)
    blob = {
        "run": str(run_dir),
        "dataset": manifest.dataset,
        "split": split,
        "clips": len(kept),
        "left_out": len(clips) - len(kept),
        "mapping": {k: list(v) for k, v in mapping.items()},
        "test": result,
        "per_class_ap": dict(zip(mapping, per_class)),
    }
    atomic_write(Path(run_dir, f"generalisation-{manifest.dataset}.json"), json.dumps(blob, indent=1))
    return blob


def reproduce(
    recipe: str, workdir: str | Path, overrides: Sequence[str] = (), progress: bool = True, n_jobs: int = 1
) -> list[Path]:
    """Every run of ``recipe``'s ``runs.yaml`` (its Table 1), prerequisites first, ``n_jobs`` at a time
    (:mod:`eastmir.experiments.parallel`); the run directories."""
    tables = run_tables()
    if recipe not in tables:
        raise ConfigError(f"eastmir reproduce {recipe}: no such recipe; valid: {', '.join(sorted(tables))}")
    jobs: dict[str, Job] = {}

    def add(name: str) -> str:
        if name not in jobs:
            config = load_config(name, list(overrides), workdir=workdir, shared=True)
            jobs[name] = Job(config, tuple(add(needed) for needed in config.requires))
        return jobs[name].name

    order = [add(f"{recipe}/{r}") for r in tables[recipe].runs()]
    done = run_jobs(list(jobs.values()), n_jobs, progress)
    return [done[name] for name in order]
