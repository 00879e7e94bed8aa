"""KD's teacher head must come from a TeacherLR run on this run's data: checked before any work.

KD and EAsT_KD read the classifier of a finished TeacherLR run
(``distillation.kd.teacher_run``). A head trained on other data would teach
silently wrong scores: on a dataset whose test clips it saw, on another
class order, on another teacher's embeddings. :func:`check_teacher_run`
compares what that run recorded (``fingerprint.json``: its config and its
dataset's manifest sha256; ``metrics.json``: its classes) with this run, and
refuses in one line naming both runs and the first difference:

- the dataset: the sha256 of ``manifest.json`` (a relabel, another folder);
- the training clips: every clip the head trained on must be in this run's
  training split (the same fraction and subset seed, or a smaller nested
  subset of the same seed, or any subset that lies inside this one);
- the classes, in order;
- the teacher and its settings (``weights_dir`` aside: it says where, not which).
"""

from __future__ import annotations

import json
from typing import Any

from eastmir.config import RunConfig
from eastmir.data.manifest import Manifest, manifest_sha256
from eastmir.data.subsets import nested_subset
from eastmir.errors import RunError
from eastmir.pipeline.prepare import open_dataset
from eastmir.pipeline.recorded import teacher_request
from eastmir.rundir import RunDirectory


def check_teacher_run(config: RunConfig) -> None:
    """Raise :class:`RunError` when ``config``'s KD teacher run was trained on other data (module docstring);
    nothing for a run without KD, or one whose teacher run is not finished (reading its head says so)."""
    if config.kd is None:
        return
    run = RunDirectory(config.kd.teacher_run)
    if not run.finished or not run.fingerprint_file.is_file():
        return
    recorded = json.loads(run.fingerprint_file.read_text())
    theirs: dict[str, Any] = recorded.get("config") or {}
    difference = _difference(config, theirs, recorded.get("manifest"), run)
    if difference:
        raise RunError(
            f"KD of run {config.name} reads the TeacherLR run {run.path}, which {difference}; train a TeacherLR "
            f"run on this run's data and teacher and point distillation.kd.teacher_run at it"
        )


def _difference(config: RunConfig, theirs: dict[str, Any], their_manifest: str | None, run: RunDirectory) -> str:
    data, their_data = config.data, theirs.get("data") or {}
    if data.stream or their_data.get("stream"):
        if data.stream != their_data.get("stream"):
            return f"read other data ({their_data.get('stream') or their_data.get('root')}, not {data.stream})"
    else:
        ours = manifest_sha256(data.root)
        if their_manifest != ours:
            return (
                f"trained on another dataset (its {their_data.get('root')}/manifest.json had sha256 "
                f"{str(their_manifest)[:12]}, this run's {data.root}/manifest.json has {str(ours)[:12]})"
            )
        manifest = open_dataset(config)
        outside = _clips_outside(manifest, config, their_data)
        if outside:
            return (
                f"trained on {outside} clip(s) outside this run's training clips (its train_fraction "
                f"{their_data.get('train_fraction', 1.0)}, subset_seed {their_data.get('subset_seed', 0)}; this "
                f"run's {data.train_fraction}, {data.subset_seed})"
            )
        classes = list(run.read_metrics().get("classes") or [])
        if classes and classes != list(manifest.classes):
            return f"has other classes or another order ({_first(classes)}, not {_first(manifest.classes)})"
    their_teacher, our_teacher = theirs.get("teacher"), config.to_dict().get("teacher")
    if not their_teacher or not our_teacher or teacher_request(their_teacher) != teacher_request(our_teacher):
        return f"probed another teacher or settings ({_words(their_teacher)}, not {_words(our_teacher)})"
    return ""


def _first(classes: list[str]) -> str:
    return ", ".join(classes[:4]) + (", …" if len(classes) > 4 else "")


def _clips_outside(manifest: Manifest, config: RunConfig, their_data: dict[str, Any]) -> int:
    """How many of the teacher run's training clips this run does not train on."""
    train = [c.clip_id for c in manifest.split("train")]
    ours = set(nested_subset(train, config.data.train_fraction, config.data.subset_seed))
    theirs = nested_subset(train, float(their_data.get("train_fraction", 1.0)), int(their_data.get("subset_seed", 0)))
    return sum(1 for clip in theirs if clip not in ours)


def _words(section: dict[str, Any] | None) -> str:
    if not section:
        return "none"
    return json.dumps(teacher_request(section), sort_keys=True)


__all__ = ["check_teacher_run"]
