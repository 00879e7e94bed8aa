"""The run directory: its layout, its checkpoints, its metrics, its fingerprint and its lock.

Every reader and writer of a run goes through :class:`RunDirectory`::

    <workdir>/runs/<name>/
      config.yaml                  the validated config the run trains with
      fingerprint.json             what the run was started from (config and data), see below
      metrics.json                 written last, atomically: the run is finished
      failed.json                  why its last training stopped with an error (diverged), until it trains again
      checkpoints/best-epochNNN-<metric>0.xxxx.ckpt   the best by the validation metric
      checkpoints/last.ckpt        written after every epoch: what a run resumes from
      logs/version_0/metrics.csv   the training log, kept across resumes
      .lock                        held by the one process training the run

**Fingerprint.** A run records the validated config it was started with and
a digest of the data it reads (:func:`data digest <eastmir.pipeline.rundata.RunData.fingerprint>`:
clips, labels, store entries and their producers). Rerunning the command
resumes the run only when both are the same (``trainer.max_epochs`` may be
raised to train on); otherwise it stops naming the keys that changed and the
two ways on (``--overwrite``, or another name).

**Lock.** One process at a time trains a run: a second ``fit`` of the same
run stops naming the process that holds it. The lock is an ``flock`` on
``.lock``: the system releases it when its holder dies (``kill -9``
included), so a dead holder's lock is simply taken over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml

from eastmir.errors import RunError
from eastmir.fetch import atomic_write, remove_stale_parts, sha256_of
from eastmir.filelock import Held, first_process, hold

CHECKPOINT_EPOCH = re.compile(r"epoch(\d+)")
CONFIG_FILE = "config.yaml"
# config keys whose value does not change what a run computes (beyond float rounding): a rerun or a resume may
# differ in them (how the step is compiled and which cuDNN algorithms it times are speed settings)
RESULT_NEUTRAL = ("requires", "trainer.compile", "trainer.cudnn_benchmark")
# keys a resumed run may change: raising trainer.max_epochs continues the run where it stopped, to what a run
# started with the higher value computes (the LR schedule and early stopping do not depend on it)
RESUMABLE = ("trainer.max_epochs",)
WHERE_ONLY = ("weights_dir",)  # teacher options that say where its weights are, not which weights


class RunMetrics(TypedDict, total=False):
    """``metrics.json``: what ``fit`` records once a run is tested (plus ``best_<monitor>``, the best
    checkpoint's validation score under its metric's name)."""

    name: str
    system: str  # how tables name the system
    student: str
    teacher: str | None  # the teacher's label (an ensemble's members joined by +)
    dataset: str
    classes: list[str]
    test: dict[str, float]  # metric → value on the test split, of the best checkpoint
    best_checkpoint: str  # relative to the run directory
    epochs: int
    steps: int
    n_clips: dict[str, int]  # split → clips used
    left_out: dict[str, int]  # split → clips left out (unusable)
    thresholds: dict[str, float] | None  # class → the validation threshold maximising F1 (multi-label)
    test_per_class_ap: dict[str, float | None] | None  # class → test AP (None: no labelled positive)
    train_fraction: float
    backbone_parameters: int
    wall_seconds: float
    data_wait: float  # the share of the training steps' time the accelerator waited for batches
    chance: float  # the validation score of a prediction that ignores the audio (training.evaluation)
    stalled: bool  # the best validation score is at chance level: reports leave the run out of comparisons


@dataclass(frozen=True)
class Claim:
    """A run held for training: whether to train it (``False``: finished), what it resumes from and the
    sha256 of its dataset's ``manifest.json`` now (``None``: streamed, or no manifest)."""

    to_train: bool
    resume: Path | None
    manifest: str | None = None


@dataclass(frozen=True)
class TrainedOn:
    """What a run trains on, as its config and fingerprint say: its data (a dataset folder, known by the
    sha256 of its ``manifest.json``, or a packed ``stream``), the nested training subset it keeps
    (:mod:`eastmir.data.subsets`) and its teacher (:func:`comparable_teacher`; ``None``: none)."""

    name: str
    root: str | None
    stream: str | None
    manifest: str | None
    train_fraction: float
    subset_seed: int
    teacher: dict[str, Any] | None

    @classmethod
    def of(cls, config: dict[str, Any], manifest: str | None) -> TrainedOn:
        """From a run's config (as ``RunConfig.to_dict`` writes it) and its manifest's sha256."""
        data, teacher = config.get("data") or {}, config.get("teacher")
        return cls(
            str(config.get("name")),
            data.get("root"),
            data.get("stream"),
            manifest,
            float(data.get("train_fraction", 1.0)),
            int(data.get("subset_seed", 0)),
            comparable_teacher(teacher) if teacher else None,
        )

    def unlike(self, other: TrainedOn) -> str:
        """How a run that trained on ``other`` saw what this run does not train on ("" when it did not): other
        data, a training clip outside this run's subset, another teacher or settings. A subset lies inside
        this one when this run keeps every training clip, or when both draw with the same seed and it keeps
        no larger a fraction (subsets of one seed are nested); other seeds are refused."""
        if self.stream or other.stream:
            if self.stream != other.stream:
                return f"read other data ({other.stream or other.root}, not {self.stream or self.root})"
        elif other.manifest != self.manifest:
            return (
                f"trained on another dataset (its {other.root}/manifest.json had sha256 {str(other.manifest)[:12]}, "
                f"this run's {self.root}/manifest.json has {str(self.manifest)[:12]})"
            )
        nested = self.train_fraction >= 1 or (
            other.subset_seed == self.subset_seed and other.train_fraction <= self.train_fraction
        )
        if not nested:
            return (
                f"trained on clips outside this run's training clips (its train_fraction {other.train_fraction:g}, "
                f"subset_seed {other.subset_seed}; this run's {self.train_fraction:g}, {self.subset_seed})"
            )
        if not self.teacher or other.teacher != self.teacher:
            ours, theirs = (json.dumps(t, sort_keys=True) if t else "none" for t in (self.teacher, other.teacher))
            return f"probed another teacher or settings ({theirs}, not {ours})"
        return ""


class RunDirectory:
    """One run's folder (it need not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    @classmethod
    def of(cls, workdir: str | Path, name: str) -> RunDirectory:
        """The run ``name`` under ``workdir`` (``{workdir}/runs/<name>``)."""
        return cls(runs_folder(workdir) / name)

    @classmethod
    def found_in(cls, paths: list[str | Path]) -> list[RunDirectory]:
        """Run directories as given, or the run directories inside a folder given (e.g. ``WORKDIR/runs``)."""
        out: list[RunDirectory] = []
        for given in paths:
            path = Path(given)
            inside = sorted(p.parent for p in path.glob(f"*/{CONFIG_FILE}")) if path.is_dir() else []
            if not (path / CONFIG_FILE).is_file() and inside:
                out += [cls(p) for p in inside]
            else:
                out.append(cls(path))
        return out

    # ------------------------------------------------------------------ paths
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def fingerprint_file(self) -> Path:
        return self.path / "fingerprint.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def log_dir(self) -> Path:
        return self.path / "logs" / "version_0"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "metrics.csv"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @property
    def failure_file(self) -> Path:
        """``failed.json``: why the last training of this run stopped with an error (a diverged run)."""
        return self.path / "failed.json"

    def record_failure(self, reason: str) -> None:
        atomic_write(self.failure_file, json.dumps({"error": reason}, indent=1))

    def read_failure(self) -> str | None:
        try:
            return str(json.loads(self.failure_file.read_text()).get("error", "failed"))
        except (OSError, ValueError, AttributeError):
            return None

    # ------------------------------------------------------------------ state
    @property
    def finished(self) -> bool:
        return self.metrics_file.is_file()

    @property
    def started(self) -> bool:
        """Whether a checkpoint of this run exists (it can be resumed)."""
        return self.resume_checkpoint() is not None

    def newest_best(self) -> Path | None:
        """The best-…ckpt of the latest epoch, or ``None``."""
        found = list(self.checkpoints.glob("best-*.ckpt")) if self.checkpoints.is_dir() else []

        def epoch(path: Path) -> int:
            match = CHECKPOINT_EPOCH.search(path.name)
            return int(match.group(1)) if match else -1

        return max(found, key=epoch) if found else None

    def resume_checkpoint(self) -> Path | None:
        """What an interrupted run resumes from: ``last.ckpt``, else the newest best checkpoint."""
        return self.last_checkpoint if self.last_checkpoint.is_file() else self.newest_best()

    def best_checkpoint(self) -> Path | None:
        """The checkpoint the run was tested with (``metrics.json``), else the newest best one."""
        if self.finished:
            return self.path / self.read_metrics()["best_checkpoint"]
        return self.newest_best()

    # ------------------------------------------------------------------ files
    def read_metrics(self) -> RunMetrics:
        """``metrics.json``; a missing or damaged file is a one-line :class:`RunError` naming it."""
        try:
            blob = json.loads(self.metrics_file.read_text())
        except FileNotFoundError:
            raise RunError(f"{self.path}: not a finished run (no metrics.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(
                f"{self.metrics_file}: damaged ({err.__class__.__name__} at character {getattr(err, 'pos', 0)}); "
                f"rerun `eastmir fit` for this run to write it again"
            ) from None
        if not isinstance(blob, dict) or "best_checkpoint" not in blob:
            raise RunError(f"{self.metrics_file}: not an eastmir metrics file (no best_checkpoint)")
        return blob

    def write_metrics(self, metrics: RunMetrics) -> None:
        atomic_write(self.metrics_file, json.dumps(metrics, indent=1))

    def write_config(self, config: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, yaml.safe_dump(config, sort_keys=False))

    # ------------------------------------------------------------ fingerprint
    def check_fingerprint(
        self, config: dict[str, Any], data: str | None = None, added: Mapping[str, Any] | None = None
    ) -> None:
        """Stop with one line when this run was started from another config (or, given ``data``, other data).

        A run started before fingerprints existed is compared with its ``config.yaml``. ``added``: flattened
        keys a later release added, with the value that does what a run saved without them did (such a run
        resumes when it has that value now).
        """
        recorded = self._recorded()
        if recorded is None:
            return
        changed = _changed(flatten(recorded.get("config", {})), flatten(_comparable(config)), added or {})
        if data is not None and recorded.get("data") not in (None, data):
            changed.append("the data it reads (clips, labels, audio files or their store entries)")
        if changed:
            shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise RunError(
                f"{self.path} was started with other settings ({shown}); rerun with --overwrite to train it "
                f"again from the start with these, or give this run another name (--set name=…)"
            )

    def check_dataset(self, manifest: str | None, manifest_path: Path | str) -> None:
        """Stop with one line when a finished run trained on another version of its dataset: the sha256 of the
        dataset's ``manifest.json`` now (``manifest``) differs from the one recorded when it trained."""
        recorded = (self._recorded() or {}).get("manifest")
        if recorded and manifest and recorded != manifest:
            raise RunError(
                f"{self.path} finished on other data: {manifest_path} changed since it trained (clips, labels or "
                "splits); its scores are not those of the data now. Rerun with --overwrite to train on the data as it "
                "is, or give this run another name (--set name=…)"
            )

    def write_fingerprint(self, config: dict[str, Any], data: str | None = None, manifest: str | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        blob = {"config": _comparable(config), "data": data, "manifest": manifest}
        atomic_write(self.fingerprint_file, json.dumps(blob, indent=1, sort_keys=True, default=str))

    def record_start(self, config: dict[str, Any], data: str, manifest: str | None, written: dict[str, Any]) -> None:
        """Record what a run trains with: its fingerprint (``config``, the ``data`` digest, the dataset
        ``manifest``'s sha256) and ``config.yaml`` (``written``: every value the run uses, the clip length the
        manifest chose too)."""
        self.write_fingerprint(config, data, manifest)
        self.write_config(written)

    def empty(self) -> None:
        """Delete what the run directory holds, but the lock this process holds in it."""
        if self.path.is_dir():
            for item in self.path.iterdir():
                if item != self.lock_file:
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()

    def trained_on(self) -> TrainedOn | None:
        """What this run recorded it trains on (``None`` before it recorded a fingerprint)."""
        if not self.fingerprint_file.is_file():
            return None
        recorded = json.loads(self.fingerprint_file.read_text())
        return TrainedOn.of(recorded.get("config") or {}, recorded.get("manifest"))

    def _recorded(self) -> dict[str, Any] | None:
        if self.fingerprint_file.is_file():
            return json.loads(self.fingerprint_file.read_text())
        if self.config_file.is_file() and (self.started or self.finished):  # a run from before fingerprints
            return {"config": _comparable(yaml.safe_load(self.config_file.read_text()) or {})}
        return None

    # ------------------------------------------------------------------- lock
    @contextmanager
    def claim(
        self, config: dict[str, Any], added: Mapping[str, Any], overwrite: bool, manifest: Path | None
    ) -> Iterator[Claim]:
        """Hold this run while training it; yields whether it is to be trained (not when it finished, on the
        dataset whose ``manifest`` it recorded) and the checkpoint it resumes from. ``overwrite`` empties it
        first; a run started with another ``config`` is refused (:meth:`check_fingerprint`); checkpoints a
        killed process wrote but never renamed into place are removed. Only the first process of a
        multi-process job locks and checks: the others train under it."""
        sha = sha256_of(manifest) if manifest is not None and manifest.is_file() else None
        if not first_process():
            yield Claim(True, self.resume_checkpoint(), sha)
            return
        with self.lock():
            if overwrite:
                self.empty()
            self.check_fingerprint(config, added=added)
            if self.finished and manifest is not None:
                self.check_dataset(sha, manifest)
            if self.checkpoints.is_dir():
                remove_stale_parts(self.checkpoints)
            yield Claim(not self.finished, self.resume_checkpoint(), sha)

    def check_owner(self, resume: Path, state: dict[str, Any], identity: str, num_classes: int) -> None:
        """Stop with one line when the checkpoint to resume from (``resume``, read as ``state``) was written by
        another run (copied in, or left from other settings): its recorded identity (:func:`run_identity`)
        differs, or (a checkpoint from before identities) its run name or class count does."""
        name = self.path.name
        recorded = next(
            (v.get("run") for k, v in (state.get("callbacks") or {}).items() if k.startswith("RunIdentity")), None
        )
        hp = state.get("hyper_parameters") or {}
        other = (hp.get("config") or {}).get("name")
        if recorded is not None:
            foreign = recorded != identity
        else:
            foreign = other != name or hp.get("num_classes") != num_classes
        if foreign:
            what = f"run {other!r}" if other and other != name else "this run with other settings or data"
            classes = hp.get("num_classes")
            shown = f", {classes} classes against {num_classes} here" if classes not in (None, num_classes) else ""
            raise RunError(
                f"{resume}: written by {what}{shown}, not by this run; it is not resumed. Delete it, or rerun with "
                "--overwrite to train this run from the start"
            )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this run for the calling process; a second process gets a :class:`RunError` naming the holder."""
        created = [d for d in (self.path.parent, self.path) if not d.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with hold(self.lock_file):
                try:
                    yield
                finally:
                    if [p.name for p in self.path.iterdir()] == [self.lock_file.name]:  # nothing was written
                        self.lock_file.unlink(missing_ok=True)
                        for folder in reversed(created):  # leave no folder this call made
                            with contextlib.suppress(OSError):
                                folder.rmdir()
        except Held as held:
            raise RunError(
                f"{self.path} is being trained by {held.holder}; wait for it to finish or stop it, "
                "or give this run another name (--set name=…)"
            ) from None


def run_identity(config: dict[str, Any], data: str | None) -> str:
    """The identity a run's checkpoints carry: sha256 of its comparable config (less the keys a resumed run may
    change) and its data digest. A checkpoint with another identity belongs to another run."""
    blob = {k: v for k, v in flatten(_comparable(config)).items() if k not in RESUMABLE}
    text = json.dumps({"config": blob, "data": data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def comparable_teacher(section: Mapping[str, Any]) -> dict[str, Any]:
    """A teacher section as records compare it: name and options as sorted JSON values, an ensemble's members
    alike, without the options that only say where its weights are (:data:`WHERE_ONLY`)."""
    request = {k: v for k, v in section.items() if k not in WHERE_ONLY}
    if request.get("members"):
        request["members"] = [comparable_teacher(member) for member in request["members"]]
    return json.loads(json.dumps(request, sort_keys=True, default=str))


def runs_folder(workdir: str | Path) -> Path:
    """Where a work directory keeps its runs (and the demo its tables): ``{workdir}/runs``."""
    return Path(workdir) / "runs"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The config as JSON values, without the keys that do not change a result."""
    blob = json.loads(json.dumps(config, default=str))
    blob.pop("config_version", None)  # a run of an earlier release compares by its (migrated) values
    for key in RESULT_NEUTRAL:
        *parents, leaf = key.split(".")
        section = blob
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(leaf, None)
    blob.pop("task", None)  # filled in from the dataset once it is read
    return blob


def _changed(before: dict[str, Any], now: dict[str, Any], added: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(before.keys() | now.keys()):
        if key not in before and key in added and now.get(key) == added[key]:
            continue  # a key added since the run started, at the value that does what it did
        if key not in RESUMABLE and before.get(key, "<unset>") != now.get(key, "<unset>"):
            out.append(f"{key}: {_short(before.get(key, '<unset>'))} → {_short(now.get(key, '<unset>'))}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "…"


__all__ = [
    "CHECKPOINT_EPOCH",
    "CONFIG_FILE",
    "Claim",
    "RunDirectory",
    "RunMetrics",
    "TrainedOn",
    "comparable_teacher",
    "flatten",
    "run_identity",
    "runs_folder",
]
