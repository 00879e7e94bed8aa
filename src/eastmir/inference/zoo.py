"""``eastmir zoo``: the authors' trained students by name, as ordinary eastmir run directories.

The authors committed eight trained EAsT_Final students to their repository
(``suncerock/EAsT-music-classification``, Git LFS; sizes and sha256 from the
LFS pointers, ``ZOO``): Mobile FCN on MagnaTagATune and CP-ResNet on
OpenMIC, one per teacher. ``eastmir zoo get NAME``:

1. finds the checkpoint: ``--file`` (a copy you have), else ``--weights-dir``
   / ``$EASTMIR_WEIGHTS``, else ``$EASTMIR_CACHE/zoo``, else downloads it there
   through the one fetcher (:mod:`eastmir.fetch`: resumable, removed when it
   fails its check). Wherever it comes from, its size and sha256 are checked
   against the published ones before it is read;
2. reads it safely (``weights_only``: tensors and plain values only; a file
   holding any other object is refused, naming it), takes the student's
   weights from its ``student.`` keys, maps every one onto eastmir's student
   by name with its shape checked (``Student.authors_state_dict``): a key
   left over or missing is a one-line error. The frozen TeacherLR head
   (``teacher.``) is not needed to predict and is left out; any other key is
   refused;
3. writes a run directory (``{workdir}/runs/<dataset>-<system>-<teacher>``):
   ``config.yaml`` is the recipe's (``openmic/east_final-passt``, …: the
   authors' front end, the student's options), a best checkpoint named with
   the authors' validation mAP, and ``zoo.json`` (where it came from, its
   sha256, the licence, where the class names came from). ``predict``,
   ``export``, ``complexity`` and ``load_run`` use it as any other run.

Class names: OpenMIC's are ``class-map.json``'s order, as the authors' label
vectors use it (shipped). MagnaTagATune's top-50 tags are the authors'
``parse_magna.py`` order: the tags sorted by their count in
``annotations_final.csv`` with ``numpy.argsort(-counts)``. No published list
is known to be theirs: tags with equal counts are ordered by numpy's
unstable sort, which can differ between machines (two lists in common use
swap ``male voice`` / ``female vocal`` and ``metal`` / ``female voice``). So
``--annotations`` must point at your ``annotations_final.csv``, and tied
tags are named on screen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eastmir.config import RunConfig, load_config
from eastmir.errors import RunError, UnknownNameError, did_you_mean
from eastmir.fetch import ChecksumMismatch, DigestRecord, FetchError, Published, atomic_write, check, fetch
from eastmir.registry import DATASETS, TEACHERS
from eastmir.rundir import CONFIG_FILE, RunDirectory
from eastmir.teachers.weights import default_cache_dir, weights_dir_from_env
from eastmir.training.checkpoints import AtomicCheckpointIO, read_checkpoint
from eastmir.training.system import EastSystem

REPOSITORY = "suncerock/EAsT-music-classification"
MEDIA = f"https://media.githubusercontent.com/media/{REPOSITORY}/main/"  # GitHub's LFS media endpoint
LICENCE = "none stated (the repository has no LICENSE file)"
RECORD = "zoo.json"


@dataclass(frozen=True)
class ZooEntry:
    """One trained student: ``name`` (``openmic/east_final-passt``), the shipped ``config`` it is built
    from (front end, student, teacher), its ``path`` in the authors' repository, the sha256 and size of
    the file, and ``student_options`` beyond the config's."""

    name: str
    config: str
    path: str
    sha256: str
    size: int
    url: str = ""
    licence: str = LICENCE
    student_options: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.name.split("/")[0]

    @property
    def validation_map(self) -> float | None:
        """The authors' validation mAP, from the file name."""
        found = re.search(r"val_mAP=([0-9.]+)\.ckpt$", self.path)
        return float(found.group(1)) if found else None

    @property
    def run_name(self) -> str:
        return self.name.replace("/", "-")

    @property
    def published(self) -> Published:
        return Published(self.url or MEDIA + self.path, f"{self.run_name}.ckpt", f"sha256:{self.sha256}", self.licence)


def _entry(teacher: str, path: str, sha256: str, size: int) -> ZooEntry:
    dataset = "openmic" if path.startswith("work_dir_openmic") else "magnatagatune"
    name = f"{dataset}/east_final-{teacher}"
    return ZooEntry(name, name, path, sha256, size)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (  # the Git LFS pointers of the authors' repository (their checkpoints' sizes and digests)
        _entry(
            "openl3",
            "work_dir_magna/east_final_openl3/epoch=93-val_mAP=0.448.ckpt",
            "1e438d11c0bf0096e1dba7bcae2e97070407274baa86b5ccb5f2e954c2c0ec20",
            3962949,
        ),
        _entry(
            "panns",
            "work_dir_magna/east_final_pann/epoch=82-val_mAP=0.450.ckpt",
            "c1cead4a0e03d0175f6fccd25de04197122f85213ddbed567b930f2651fd7414",
            4270149,
        ),
        _entry(
            "passt",
            "work_dir_magna/east_final_passt/epoch=64-val_mAP=0.466.ckpt",
            "722690d5b48418af026413d3b00e12f00eb8197ec4a604deaae0b8e174c502f2",
            4014149,
        ),
        _entry(
            "vggish",
            "work_dir_magna/east_final_vggish/epoch=67-val_mAP=0.451.ckpt",
            "f15deefd761440b1a77ec43a7397f0f2a6ef94e0f3c677fbb25dae252c1ecbdd",
            3886149,
        ),
        _entry(
            "openl3",
            "work_dir_openmic/east_final_openl3/epoch=62-val_mAP=0.851.ckpt",
            "6ffad4b2e7c087de6eea46156f2e78ffdc212f97435ac48ac8a67f50575878f8",
            66654143,
        ),
        _entry(
            "panns",
            "work_dir_openmic/east_final_pann/epoch=90-val_mAP=0.860.ckpt",
            "e113ac0b6831539f5cb35fe956ae177b56e2a39e3c585a9afb04983a7316febe",
            66777023,
        ),
        _entry(
            "passt",
            "work_dir_openmic/east_final_passt/epoch=96-val_mAP=0.864.ckpt",
            "7605bb58b1d8737db909e61a8bbed994c186e579b9b909ac2488d899a5e3cc15",
            66674623,
        ),
        _entry(
            "vggish",
            "work_dir_openmic/east_final_vggish/epoch=75-val_mAP=0.854.ckpt",
            "e95cee8df9a94feeb2528075cd498de2d7bac91d8338c52e71db1b6006aea868",
            66623423,
        ),
    )
}


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        names = sorted(ZOO)
        raise UnknownNameError(
            f"no trained student {name!r} in the zoo{did_you_mean(name, names)}; `eastmir zoo` lists them"
        )
    return ZOO[name]


def _cache() -> Path:
    return default_cache_dir() / "zoo"


def _record() -> DigestRecord:
    return DigestRecord(_cache() / RECORD)


def _candidates(spec: ZooEntry, weights_dir: str | Path | None) -> list[Path]:
    """Where the checkpoint may already be: the weights folder (by our name or the authors' file name), then
    the cache."""
    folder = weights_dir_from_env(weights_dir)
    names = (spec.published.filename, Path(spec.path).name)
    return [*(folder / n for n in names if folder), _cache() / spec.published.filename]


def verify(path: Path, spec: ZooEntry) -> Path:
    """``path`` after checking its size and sha256 against the published ones; a one-line error otherwise."""
    size = path.stat().st_size
    advice = f"delete it and run `eastmir zoo get {spec.name}` again, or download it from {spec.published.url}"
    if size != spec.size:
        raise ChecksumMismatch(f"{path}: {size} bytes, not the published {spec.size} of {spec.name}; {advice}")
    try:
        check(path, spec.published, _record(), str(path))
    except ChecksumMismatch as err:
        raise ChecksumMismatch(f"{err}; {advice}") from None
    return path


def locate(
    spec: ZooEntry, weights_dir: str | Path | None = None, file: str | Path | None = None, progress=True
) -> Path:
    """The checked checkpoint file of ``spec``: ``file``, else found (weights folder, cache), else downloaded."""
    if file is not None:
        if not Path(file).is_file():
            raise RunError(f"{file}: no such file (--file names a copy of {spec.name}'s checkpoint)")
        return verify(Path(file), spec)
    for candidate in _candidates(spec, weights_dir):
        if candidate.is_file():
            return verify(candidate, spec)
    try:
        path = fetch(spec.published, _cache(), _record(), progress)
    except FetchError as err:
        raise FetchError(
            f"{err}; or download it yourself from {spec.published.url} and pass it with --file "
            f"(or put it in --weights-dir)"
        ) from None
    return verify(path, spec)


def on_this_machine(spec: ZooEntry, weights_dir: str | Path | None = None) -> bool:
    return any(p.is_file() for p in _candidates(spec, weights_dir))


# --------------------------------------------------------------------------------------------- classes


# ------------------------------------------------------------------------------------------ conversion


def student_state(checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``student.`` weights of an authors' Lightning checkpoint, without the prefix; the frozen TeacherLR
    head (``teacher.``) left out; any other key refused."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise RunError(f"{source}: not a Lightning checkpoint (no state_dict)")
    student: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("student."):
            student[key.removeprefix("student.")] = value
        elif not key.startswith("teacher."):
            raise RunError(f"{source}: unexpected key {key} (the authors' students hold student.* and teacher.*)")
    if not student:
        raise RunError(f"{source}: no student.* weights in its state_dict")
    return student


def convert(
    spec: ZooEntry, checkpoint_file: Path, workdir: str | Path, classes: list[str], source_of_classes: str
) -> Path:
    """Write the run directory of ``spec`` from its checked checkpoint file; returns it."""
    config = load_config(spec.config, [f"name={spec.run_name}"], workdir=workdir)
    changes: dict[str, Any] = {"task": "multilabel"}
    if spec.student_options:
        changes["student"] = spec.student_options
    config = config.changed(changes, f"zoo entry {spec.name}")
    try:
        state = read_checkpoint(checkpoint_file)
    except Exception as err:  # TrainingError: unsafe, unreadable or corrupted
        raise RunError(str(err)) from None
    teacher = TEACHERS.get(config.teacher.name) if config.teacher else None
    system = EastSystem(
        config,
        len(classes),
        embedding_dim=getattr(teacher, "dim", None),
        classes=classes,
        clip_seconds=config.data.clip_seconds,
        embedding_period=getattr(teacher, "frame_seconds", None),
    )
    source = f"{checkpoint_file} ({spec.name})"
    try:
        weights = system.student.authors_state_dict(student_state(state, source), source)
    except ValueError as err:
        raise RunError(str(err)) from None
    system.student.load_state_dict(weights, strict=True)
    run = RunDirectory.of(config.workdir, config.name)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    for old in run.checkpoints.glob("best-*.ckpt"):
        old.unlink()
    epoch = int(re.search(r"epoch=(\d+)", spec.path).group(1)) if "epoch=" in spec.path else 0
    best = run.checkpoints / f"best-epoch={epoch:02d}-val_mAP={spec.validation_map or 0:.4f}.ckpt"
    payload = {"state_dict": system.state_dict(), "hyper_parameters": dict(system.hparams), "epoch": epoch}
    AtomicCheckpointIO().save_checkpoint(payload, best)
    atomic_write(run.path / CONFIG_FILE, _yaml(config))
    provenance = {
        "zoo": spec.name,
        "source": spec.published.url,
        "sha256": spec.sha256,
        "bytes": spec.size,
        "licence": spec.licence,
        "authors_validation_mAP": spec.validation_map,
        "classes": source_of_classes,
        "dropped": "the frozen TeacherLR head (teacher.*), which prediction does not use",
    }
    atomic_write(run.path / "zoo.json", json.dumps(provenance, indent=1) + "\n")
    return run.path


def _yaml(config: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def get(
    name: str,
    workdir: str | Path,
    weights_dir: str | Path | None = None,
    file: str | Path | None = None,
    annotations: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Find or download ``name``'s checkpoint, check it, and convert it into a run directory; returns it."""
    spec = entry(name)
    named = DATASETS.get(spec.dataset).authors_classes(annotations, name)
    for group in named.ties:
        print(
            f"note: {', '.join(group)} have the same count: their order is numpy's sort's here, which may "
            "differ from the authors' machine (check their predictions)"
        )
    classes, source = named.names, named.source
    path = locate(spec, weights_dir, file, progress)
    return convert(spec, path, workdir, classes, source)


def catalogue(weights_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per trained student: name, dataset, student, teacher, classes, the authors' validation mAP,
    size, licence, and whether the file is on this machine."""
    rows = []
    for spec in ZOO.values():
        config = load_config(spec.config, workdir=default_cache_dir())
        rows.append(
            {
                "name": spec.name,
                "dataset": spec.dataset,
                "student": config.student.name,
                "teacher": config.teacher_label,
                "classes": DATASETS.get(spec.dataset).num_classes,
                "val_mAP": spec.validation_map,
                "size": spec.size,
                "licence": spec.licence,
                "here": on_this_machine(spec, weights_dir),
            }
        )
    return rows


def catalogue_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| name | dataset | student | teacher | classes | authors' val mAP | size | licence | on this machine |",
        "|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        size = f"{r['size'] / 1e6:.1f} MB"
        val = "—" if r["val_mAP"] is None else f"{r['val_mAP']:.3f}"
        here = "yes" if r["here"] else "no (`eastmir zoo get`)"
        lines.append(
            f"| {r['name']} | {r['dataset']} | {r['student']} | {r['teacher']} | {r['classes']} | {val} | {size} "
            f"| {r['licence']} | {here} |"
        )
    return "\n".join(lines)
