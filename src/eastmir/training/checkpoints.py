"""Checkpoints that can be trusted: written atomically, read safely, resumed exactly.

- :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file,
  flushes it to disk and renames it over the old one, so an interrupted
  save (``kill -9``, a full disk) never leaves a half-written ``last.ckpt``.
- :func:`read_checkpoint` loads with ``weights_only=True`` (no pickled code
  runs: a checkpoint holding other Python objects is refused) and names the
  file in a one-line error when it is unreadable.
- Every checkpoint carries the sha256 of its own contents (tensors byte for
  byte, the rest by value; :func:`content_digest`), checked on every read:
  torch's zip format has no checksum of its own, and a flipped bit in a
  tensor otherwise loads silently as a different weight. Checkpoints without
  one (older runs, other tools) load as before.
- :class:`RngState` stores the torch (CPU and CUDA), numpy and Python RNG
  states in every checkpoint and restores them on resume, so a resumed run
  draws the same shuffles, dropout masks and augmentations as an
  uninterrupted one (Lightning saves the model, optimiser, scheduler and
  callbacks, not the RNGs). Resuming therefore skips Lightning's sanity
  validation, whose data loader would draw from the restored RNG.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from eastmir.config import RunConfig
from eastmir.errors import RunError, TrainingError
from eastmir.fetch import atomic_writer
from eastmir.registry import STUDENTS
from eastmir.rundir import Claim, RunDirectory, TrainedOn

DIGEST_KEY = "eastmir_content_sha256"


def content_digest(obj: Any) -> str:
    """sha256 of a checkpoint's contents: tensors by dtype, shape and bytes; containers in order; the rest by
    ``repr``. The same after a save and load round trip; any changed bit in a tensor changes it."""
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def _feed(digest, obj: Any) -> None:
    if torch.is_tensor(obj):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(obj.shape)};".encode())
        if flat.numel():
            digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            digest.update(f"{key!r}=".encode())
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)};".encode())
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(f"{obj!r};".encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints go to ``.<name>.part`` first and are renamed when complete;
    loading is always ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if "://" in str(path):  # remote storage: Lightning's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {**checkpoint, DIGEST_KEY: content_digest(checkpoint)}
        with atomic_writer(path) as fh:  # (a full disk or ulimit -f comes back as the OSError behind it)
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, loaded safely and checked against its digest; a truncated, corrupted or unsafe
    file is named."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # not a checkpoint at all (garbage), rather than a forbidden object
            raise TrainingError(f"{path}: unreadable checkpoint (not a torch checkpoint)") from err
        raise TrainingError(  # weights_only met a Python object that is not plain data
            f"{path}: refused: the checkpoint holds pickled Python objects ({found.group(1)}), not only "
            "weights; loading it could run code. Use checkpoints written by eastmir or Lightning"
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, … on a damaged file
        detail = " ".join(str(err).split())[:200]
        raise TrainingError(f"{path}: unreadable checkpoint ({type(err).__name__}: {detail})") from err
    stored = state.pop(DIGEST_KEY, None) if isinstance(state, dict) else None
    if stored is not None and content_digest(state) != stored:
        raise TrainingError(
            f"{path}: corrupted checkpoint (its contents no longer match the sha256 stored in it: "
            "a changed byte on disk)"
        )
    return state


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RngState(Callback):
    """Every checkpoint carries the RNG states at the moment it was saved; resuming restores them."""

    def state_dict(self) -> dict[str, Any]:
        return _rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _set_rng_states(state_dict)


class RunIdentity(Callback):
    """Every checkpoint carries the identity of the run that wrote it (:func:`eastmir.rundir.run_identity`)."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def state_dict(self) -> dict[str, Any]:
        return {"run": self.identity}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # checked before resuming, by RunDirectory.check_owner


def check_resumable(path: Path) -> dict[str, Any]:
    """The checkpoint to resume from, read; a one-line error saying how to go on when it is unreadable."""
    try:
        return read_checkpoint(path)
    except TrainingError as err:
        run_dir = path.parent.parent
        others = [p.name for p in path.parent.glob("*.ckpt") if p != path]
        fallback = (
            f"delete it to resume from the previous checkpoint ({', '.join(sorted(others))})" if others else "delete it"
        )
        raise TrainingError(
            f"{err}; {fallback}, or rerun with --overwrite to train {run_dir.name} from the start"
        ) from None


KD_REFUSAL = (
    "KD of run {name} reads the TeacherLR run {path}, which {difference}; train a TeacherLR run on this run's "
    "data and teacher and point distillation.kd.teacher_run at it"
)


@dataclass(frozen=True)
class TeacherHead:
    """A finished TeacherLR run's classifier, which KD copies in frozen: ``state`` holds ``weight (classes,
    embedding_dim)`` and ``bias (classes,)``; ``classes`` names its rows in order, as the run recorded them
    (empty when it did not); ``run`` is its directory."""

    run: Path
    state: dict[str, torch.Tensor]
    classes: list[str]


def read_teacher_head(run_dir: str | Path, reader: TrainedOn | None = None) -> TeacherHead:
    """The head of the finished TeacherLR run ``run_dir``, read from its best checkpoint.

    Given what the KD run that reads it trains on (``reader``), a head trained on other data is refused in one
    line naming both runs and the difference (:meth:`TrainedOn.unlike`: the dataset, a training clip outside
    the reader's subset, the teacher and its settings); its classes are checked where it is copied in
    (:meth:`eastmir.training.system.EastSystem.set_teacher_head`)."""
    run = RunDirectory(run_dir)
    if not run.finished:
        raise RunError(
            f"KD needs a finished TeacherLR run at {run.path} (no metrics.json there): train it first, "
            "e.g. `eastmir fit --config synth/teacher_lr`"
        )
    blob = run.read_metrics()
    student = blob.get("student")
    if student not in STUDENTS or not STUDENTS.get(student).is_probe:
        raise RunError(f"{run.path} is a {student} run, not a TeacherLR run (a probe on the embedding)")
    theirs = run.trained_on()
    difference = reader.unlike(theirs) if reader is not None and theirs is not None else ""
    if difference:
        raise RunError(KD_REFUSAL.format(name=reader.name, path=run.path, difference=difference))
    best = run.best_checkpoint()
    state = read_checkpoint(best)["state_dict"]
    try:
        head = {"weight": state["student.head.weight"], "bias": state["student.head.bias"]}
    except KeyError as err:
        raise RunError(f"{best}: no TeacherLR head in this checkpoint") from err
    return TeacherHead(run.path, head, list(blob.get("classes") or []))


@dataclass(frozen=True)
class RunStart:
    """Where a run starts: the checkpoint it resumes from (``None``: the beginning) and its contents, read
    once; the KD head of its TeacherLR run; the wall-clock time it started at."""

    resume: Path | None
    state: dict[str, Any] | None
    teacher_head: TeacherHead | None
    started: float


def start_state(claim: Claim, config: RunConfig) -> RunStart:
    """Read what a run resumes from and its KD teacher run's head, before any work: an unreadable checkpoint,
    a missing TeacherLR run or one trained on other data (:func:`read_teacher_head`) stops at once."""
    head = None
    if config.kd is not None:
        head = read_teacher_head(config.kd.teacher_run, TrainedOn.of(config.to_dict(), claim.manifest))
    state = check_resumable(claim.resume) if claim.resume is not None else None
    return RunStart(claim.resume, state, head, time.time())
