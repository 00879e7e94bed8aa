"""Run configs: read YAML safely, compose parts, apply overrides, resolve, validate.

A run's config is merged, in order, from one or more **sources**:

- a YAML file: a path, or the name of a shipped file (``synth/east_final``);
  ``extends:`` names the files (relative to it) it builds on;
- a shipped **run entry** (``openmic/east_final-passt``) from a recipe's
  ``runs.yaml``, which composes ``base.yaml`` + ``../systems/<system>.yaml``
  + ``teachers/<teacher>.yaml`` + the published λ and exceptions (see
  :class:`RunTable`).

Mappings merge deeply, later sources winning; a mapping naming another
component (a different ``name:``, e.g. another student) replaces the earlier
one instead of merging into it. ``--set key.sub=value`` overrides (values
parsed as YAML) come last. Then ``{workdir}`` is replaced by the work
directory and ``{data_root}`` by ``data.root``, and the result is checked by
:func:`eastmir.config.validate_config` into a frozen
:class:`~eastmir.config.RunConfig`. The resolved config is saved in the run
directory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from eastmir.config.merge import deep_merge
from eastmir.config.rules import teacher_section, validate_config
from eastmir.config.schema import RunConfig
from eastmir.errors import ConfigError, UnknownNameError, did_you_mean
from eastmir.fetch import sha256_of
from eastmir.registry import STUDENTS

PLACEHOLDER = re.compile(r"\{(workdir|data_root|data_id|recipe|teacher)\}")


def shipped_config_dir() -> Path:
    """The configs shipped inside the package (``configs/`` in the repository)."""
    return Path(str(resources.files("eastmir") / "configs"))


MAX_CONFIG_BYTES = 1 << 20  # a run config is a few kB; a larger file is not one


class UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader (no ``!!python/…`` objects) that refuses a key given twice in one mapping (PyYAML
    would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (lines {seen[key]} and {line}); keep one", None
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """Plain YAML from ``text`` (safe loader, duplicate keys refused); :class:`ConfigError` naming ``where``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"{where}: invalid YAML ({detail}); only plain YAML is accepted") from err


def read_yaml(path: Path) -> Any:
    """Parse a YAML file: UTF-8 text of at most 1 MiB, plain YAML only, no key given twice."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {size / 2**20:.1f} MiB, too large for a config (at most {MAX_CONFIG_BYTES >> 20} MiB); "
                "is it the right file?"
            )
        with open(path, "rb") as fh:
            blob = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as err:
        kind = "UTF-16 text" if blob[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8 text"
        raise ConfigError(
            f"{path}: {kind} (byte {err.start} cannot be read as UTF-8); save the config as UTF-8 text"
        ) from None
    return parse_yaml(text.removeprefix("\ufeff"), str(path))


def read_config_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A YAML config with its ``extends:`` parents merged in."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `extends` cycle through {[str(p) for p in chain]}")
    data = read_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    parents = data.pop("extends", None) or []
    base: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise ConfigError(f"{path}: extends {parent!r}, which does not exist ({parent_path})")
        base = deep_merge(base, read_config_file(parent_path, (*chain, path)))
    return deep_merge(base, data)


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), node)
    return node


def _placeholders_left(node: Any, where: str = "") -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _placeholders_left(v, f"{where}{k}.")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _placeholders_left(v, f"{where}{i}.")]
    if isinstance(node, str) and PLACEHOLDER.search(node):
        return [f"{where.rstrip('.')} = {node!r}"]
    return []


@dataclass
class RunTable:
    """A recipe's ``runs.yaml``: the runs of a results table as parts, not copies.

    ::

        base: base.yaml                          # the recipe every run starts from
        teachers_dir: teachers                   # teachers/<teacher>.yaml (default)
        teachers: [vggish, openl3, passt, panns]
        systems: [teacher_lr, kd, east_final]    # ../systems/<system>.yaml, run with every teacher
        without_teacher: [baseline]              # ../systems/<system>.yaml, run alone
        lambda: {vggish: 0.8, passt: 0.9}        # λ of every system that distils, per teacher
        align: {panns: [1, 60]}                  # time-alignment factors the authors' configs state, per teacher
        settings:                                # exceptions, by run name
          teacher_lr-vggish: {optimizer: {lr: 0.2}}
        name_by_data: true                       # run directories carry {data_id} (see below)

    Run names are ``<system>-<teacher>`` and ``<system>``; a run's ``name``
    (its directory) is ``<recipe>-<run name>``. ``{recipe}`` and
    ``{teacher}`` in the parts are replaced, e.g. for KD's
    ``teacher_run: "{workdir}/runs/{recipe}-teacher_lr-{teacher}"``.
    A recipe for data of the user's own (``folder``) sets ``name_by_data``:
    its runs are ``<recipe>-<data_id>-<run name>`` (:func:`data_id`), so
    two datasets trained in one work directory never share a run (or a
    KD head).
    """

    path: Path
    base: str
    teachers: list[str]
    systems: list[str] = field(default_factory=list)
    without_teacher: list[str] = field(default_factory=list)
    lambdas: dict[str, float] = field(default_factory=dict)
    settings: dict[str, dict] = field(default_factory=dict)
    # [k_student, k_teacher] of every system with a feature regulariser, per teacher, where the authors' configs
    # state them (they can differ from what the frame periods give: OpenMIC's PANNs vector × 60, not 62)
    align: dict[str, list[int]] = field(default_factory=dict)
    teachers_dir: str = "teachers"
    name_by_data: bool = False

    @property
    def recipe(self) -> str:
        return self.path.parent.name

    @classmethod
    def read(cls, path: Path) -> RunTable:
        data = read_yaml(path) or {}
        known = {"base", "teachers", "systems", "without_teacher", "lambda", "settings", "teachers_dir", "align"}
        known |= {"name_by_data"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(
            path,
            data.get("base", "base.yaml"),
            list(data.get("teachers", [])),
            list(data.get("systems", [])),
            list(data.get("without_teacher", [])),
            dict(data.get("lambda", {})),
            dict(data.get("settings", {})),
            teachers_dir=data.get("teachers_dir", "teachers"),
            align=dict(data.get("align", {})),
            name_by_data=bool(data.get("name_by_data", False)),
        )

    def runs(self) -> list[str]:
        return [*self.without_teacher, *(f"{s}-{t}" for s in self.systems for t in self.teachers)]

    def compose(self, run: str) -> dict:
        """The raw config of one run of the table."""
        if run not in self.runs():
            raise UnknownNameError(
                f"{self.recipe}/{run}: not a run of {self.path}{did_you_mean(run, self.runs())}; "
                f"valid: {', '.join(self.runs())}"
            )
        system, _, teacher = run.partition("-")
        here = self.path.parent
        config = read_config_file(here / self.base)
        config = deep_merge(config, read_config_file(here.parent / "systems" / f"{system}.yaml"))
        if teacher:
            config = deep_merge(config, read_config_file(here / self.teachers_dir / f"{teacher}.yaml"))
            dist = config.get("distillation") or {}
            if (dist.get("feature") or dist.get("kd")) and teacher in self.lambdas:
                config = deep_merge(config, {"distillation": {"lambda": self.lambdas[teacher]}})
            if dist.get("feature") and teacher in self.align:
                config = deep_merge(config, {"distillation": {"feature": {"align": list(self.align[teacher])}}})
        config = deep_merge(config, self.settings.get(run, {}))
        recipe = f"{self.recipe}-{{data_id}}" if self.name_by_data else self.recipe  # data_id: when data.root is known
        config["name"] = f"{recipe}-{run}"
        return _substitute(config, {"recipe": recipe, "teacher": teacher})


def run_tables() -> dict[str, RunTable]:
    """Every shipped ``runs.yaml``, by recipe."""
    return {p.parent.name: RunTable.read(p) for p in sorted(shipped_config_dir().glob("*/runs.yaml"))}


def shipped_names() -> list[str]:
    """Every runnable shipped config: ``synth/<system>`` files and the runs of every ``runs.yaml``."""
    root = shipped_config_dir()
    files = [
        p.relative_to(root).with_suffix("").as_posix()
        for p in sorted(root.glob("*/*.yaml"))
        if p.stem not in ("base", "runs") and p.parent.name != "systems"
    ]
    entries = [f"{recipe}/{run}" for recipe, table in run_tables().items() for run in table.runs()]
    return files + entries


def _unknown_config(name: str) -> UnknownNameError:
    root = shipped_config_dir()
    files = sorted({p.parent.name: None for p in root.glob("*/*.yaml") if p.parent.name != "systems"})
    listing = []
    for recipe in files:
        table = root / recipe / "runs.yaml"
        if table.is_file():
            t = RunTable.read(table)
            listing.append(
                f"{recipe}/{{{', '.join(t.without_teacher)}}} and {recipe}/<system>-<teacher> "
                f"(systems {', '.join(t.systems)}; teachers {', '.join(t.teachers)})"
            )
        else:
            stems = sorted(p.stem for p in (root / recipe).glob("*.yaml") if p.stem not in ("base", "runs"))
            listing.append(f"{recipe}/{{{', '.join(stems)}}}")
    return UnknownNameError(
        f"{name}: no such config file or shipped config{did_you_mean(str(name), shipped_names())}; "
        f"shipped: {'; '.join(listing)} (`eastmir configs` lists them all)"
    )


def config_source(name: str | Path) -> tuple[dict, str]:
    """The raw config of one source (a file, a shipped file or a shipped run entry) and how to name it."""
    path = Path(name)
    if path.is_file():
        return read_config_file(path), str(path)
    root = shipped_config_dir()
    text = str(name).removesuffix(".yaml")
    shipped = root / f"{text}.yaml"
    if shipped.is_file() and shipped.stem != "runs":
        return read_config_file(shipped), text
    recipe, _, run = text.partition("/")
    table = root / recipe / "runs.yaml"
    if run and table.is_file():
        table_obj = RunTable.read(table)
        if run in table_obj.runs():
            return table_obj.compose(run), text
    if path.suffix in (".yaml", ".yml") and (path.is_absolute() or not shipped.parent.is_dir()):
        raise ConfigError(f"{path}: no such config file")
    raise _unknown_config(str(name))


def parse_overrides(items: list[str] | None) -> dict:
    """``["a.b=1", "c=[1,2]"]`` → nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=UniqueKeyLoader)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({' '.join(str(err).split())})") from err
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part}")
        node[leaf] = value
    return out


PROBE_SCOPE = "teacher_lr"  # `--set teacher_lr.trainer.max_epochs=50`: an override for TeacherLR probes only


def is_probe_config(config: dict) -> bool:
    """Whether a raw config trains a linear probe on the teacher's embedding (TeacherLR)."""
    name = (config.get("student") or {}).get("name") if isinstance(config.get("student"), dict) else None
    return name in STUDENTS.names() and bool(getattr(STUDENTS.get(name), "is_probe", False))


def scoped_overrides(config: dict, overrides: list[str] | None, shared: bool) -> dict:
    """The overrides that reach ``config``: ``teacher_lr.<key>`` ones only a TeacherLR probe's (as ``<key>``);
    with ``shared`` (a study's overrides, given once for every system), plain ``trainer.<key>`` ones only the
    students': the probe keeps its own recipe's schedule (200 epochs with early stopping) unless it is named."""
    parsed = parse_overrides(overrides)
    probe_only = parsed.pop(PROBE_SCOPE, None) or {}
    if not isinstance(probe_only, dict):
        raise ConfigError(f"--set {PROBE_SCOPE}=…: name a key, e.g. {PROBE_SCOPE}.trainer.max_epochs=50")
    if not is_probe_config(config):
        return parsed
    if shared:
        parsed.pop("trainer", None)
    return deep_merge(parsed, probe_only)


def probe_note(config: RunConfig) -> str:
    """For a TeacherLR probe, a line saying its own training schedule (a study's ``trainer`` overrides do not
    reach it); for a student, nothing."""
    if not config.student.capabilities.is_probe:
        return ""
    t = config.trainer
    return (
        f" (TeacherLR probe: up to {t.max_epochs} epochs, early stopping after {t.early_stop_patience}, its own "
        "recipe; `--set trainer.…` reaches the students only, `--set teacher_lr.trainer.max_epochs=N` the probe)"
    )


def load_config(
    sources: str | Path | list[str | Path],
    overrides: list[str] | None = None,
    workdir: str | Path | None = None,
    shared: bool = False,
) -> RunConfig:
    """Read, compose, override, resolve and validate; returns the frozen, complete :class:`RunConfig`.

    ``shared``: the overrides are a study's, given once for many systems (:func:`scoped_overrides`)."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise ConfigError("no config given: pass --config NAME_OR_FILE (see `eastmir configs`)")
    config: dict = {}
    names = []
    for source in sources:
        raw, label = config_source(source)
        config = deep_merge(config, raw)
        names.append(label)
    config = deep_merge(config, scoped_overrides(config, overrides, shared))
    label = " + ".join(names)
    if workdir is not None:
        config["workdir"] = str(Path(workdir).absolute())
    if not config.get("workdir"):
        raise ConfigError(f"{label}: no work directory: pass --workdir DIR (or set `workdir:` in the config)")
    config = _substitute(config, {"workdir": str(config["workdir"])})
    data_root = (config.get("data") or {}).get("root") if isinstance(config.get("data"), dict) else None
    if isinstance(data_root, str):
        config = _substitute(config, {"data_root": data_root})
    if any("{data_id}" in left for left in _placeholders_left(config)):  # only then is the manifest read
        config = _substitute(config, {"data_id": data_id(config.get("data") or {})})
    left = _placeholders_left(config)
    if left:
        raise ConfigError(f"{label}: unresolved placeholder in {', '.join(left)}; set these keys explicitly")
    return validate_config(config, label)


def data_id(data: dict[str, Any]) -> str:
    """``{data_id}``: 8 hex digits naming the data a config reads, for run names: of the sha256 of
    ``data.root``'s ``manifest.json`` (another folder, or the same one prepared again with other clips or
    labels, gets another); with ``data.stream``, of its address; before the folder is prepared, of its
    absolute path."""
    if data.get("stream"):
        return hashlib.sha256(str(data["stream"]).encode()).hexdigest()[:8]
    root = Path(str(data.get("root") or "."))
    manifest = root / "manifest.json"
    if manifest.is_file():
        return sha256_of(manifest)[:8]
    return hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:8]


def with_name_suffix(config: RunConfig, suffix: str) -> RunConfig:
    """``config`` named ``<name>-<suffix>``, its KD head read from the TeacherLR run of the same suffix."""
    changes: dict[str, Any] = {"name": f"{config.name}-{suffix}"}
    if config.kd:
        head = Path(config.kd.teacher_run)
        changes["distillation"] = {"kd": {"teacher_run": str(head.with_name(f"{head.name}-{suffix}"))}}
    return config.changed(changes)


def on_training_share(config: RunConfig, fraction: float, seed: int, source: str) -> RunConfig:
    """``config`` on the nested ``fraction`` of its training split drawn by ``seed`` (also its training seed),
    named ``<name>-frac<fraction>-seed<seed>`` (``source`` names the config in errors): a run of the
    limited-data study, and of the demo, which pairs each system with the Baseline of the same seed."""
    suffix = f"frac{fraction:g}-seed{seed}"
    changes = {"seed": seed, "data": {"train_fraction": fraction, "subset_seed": seed}}
    return with_name_suffix(config, suffix).changed(changes, f"{source} ({suffix})")


def with_teacher(config: RunConfig, teacher: str) -> RunConfig:
    """``config`` taught by ``teacher`` (``musicnn``, ``musicnn+aisfx``, …) instead of its own teacher.

    The run is then named ``<name>-<teacher>``, and KD reads the head of the
    TeacherLR run of the same teacher. A config without a teacher (Baseline),
    or with this one already, is returned as it is.
    """
    if not config.teacher or config.teacher_label == teacher:
        return config
    renamed = with_name_suffix(config, teacher)
    return renamed.changed(
        {"teacher": teacher_section(teacher)}, f"{renamed.name} (demo config with teacher {teacher})"
    )
