"""The typed schema of a run config, checked once before any work.

Built on pydantic (v2): it is the maintained library that validates nested
typed models with coercion, per-field constraints and error locations,
validates stdlib dataclasses we already have (the front end's
:class:`~eastmir.audio.FrontendConfig`), and builds a model from a
function signature, which checks each component's options (a student's,
teacher's, regulariser's or dataset's keyword arguments) against the code
itself, so schema and code cannot drift apart. (OmegaConf structured configs
cannot type the per-component options; jsonargparse would also own the
command line.)

:func:`validate_config` turns a plain dict into a complete, checked plain
dict (every default filled in, every path absolute) or raises one
:class:`~eastmir.errors.ConfigError` whose message names every problem:

- an unknown key, with the closest valid one: ``unknown key trainer.max_epoch
  (did you mean trainer.max_epochs?)``;
- a wrong type or value, with the key and what it should be:
  ``trainer.max_epochs: expected an integer, got 'abc'``;
- an impossible combination (KD without ``teacher_run``, a stage the student
  does not have, a student reading 96 mels from a 128-mel front end, …).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    model_validator,
)

from eastmir.audio import FrontendConfig
from eastmir.errors import ConfigError, UnknownNameError, did_you_mean
from eastmir.registry import DATASETS, REGULARISERS, STUDENTS, TEACHERS, Registry


def absolute_path(value: str) -> str:
    """A path as given, made absolute against the current directory (``~`` expanded)."""
    return os.path.abspath(os.path.expanduser(value))


PathStr = Annotated[str, AfterValidator(absolute_path)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class DataSection(Section):
    """Which prepared dataset a run reads, and how."""

    dataset: str
    root: PathStr  # the folder `eastmir data prepare` wrote manifest.json into
    clip_seconds: PositiveFloat | None = None  # None: the most common clip duration of the manifest
    batch_size: int = Field(16, ge=2)  # BatchNorm needs two clips; with DDP: the global batch
    num_workers: NonNegativeInt = 0
    on_error: Literal["raise", "skip"] = "raise"
    stream: str | None = None  # a folder or bucket URL written by `eastmir pack`: read shards, not the store
    train_fraction: float = Field(1.0, gt=0, le=1)  # train on a nested seeded subset (eastmir.data.subsets)
    subset_seed: NonNegativeInt = 0  # which nested subsets; independent of the training seed

    @model_validator(mode="after")
    def _local_stream_absolute(self) -> DataSection:
        if self.stream and "://" not in self.stream:
            self.stream = absolute_path(self.stream)
        return self


class ComponentSection(BaseModel):
    """``{name, ...options}``: the options are checked against the component's constructor."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str


class FeatureSection(ComponentSection):
    stages: Literal["all"] | list[int] | int = [-1]
    weight: NonNegativeFloat = 1.0


class KDSection(Section):
    weight: NonNegativeFloat = 1.0
    temperature: PositiveFloat = 2.0
    hard: bool = False
    teacher_run: PathStr  # a finished TeacherLR run directory


class CompressionSection(Section):
    name: Literal["linear"] = "linear"


class DistillationSection(Section):
    lambda_: float = Field(0.0, alias="lambda", ge=0.0, le=1.0)
    feature: FeatureSection | None = None
    kd: KDSection | None = None
    compression: CompressionSection | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DistillationSection:
        if self.compression is not None and self.feature is None:
            raise ValueError(
                "distillation.compression needs distillation.feature (the distance to the compact embedding)"
            )
        if self.feature is None and self.kd is None and self.lambda_ > 0:
            raise ValueError("distillation.lambda is set but there is neither distillation.feature nor distillation.kd")
        return self


class SpecAugmentSection(Section):
    freq: NonNegativeInt = 0
    time: NonNegativeInt = 0


class AugmentSection(Section):
    mixup_alpha: NonNegativeFloat = 0.0
    spec_augment: SpecAugmentSection | None = None
    fmin_jitter: NonNegativeFloat = 0.0  # Hz
    fmax_jitter: NonNegativeFloat = 0.0  # Hz


class OptimizerSection(Section):
    name: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = 0.0


class SchedulerSection(Section):
    """ReduceLROnPlateau on the validation loss."""

    factor: float = Field(0.2, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 5


class TrainerSection(Section):
    max_epochs: PositiveInt = 100
    max_steps: int = Field(-1, ge=-1)
    early_stop_patience: NonNegativeInt = 12  # epochs without a lower validation loss
    gradient_clip_val: NonNegativeFloat | None = 1.0
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: PositiveInt = 1
    precision: str | int = "32-true"
    log_every_n_steps: PositiveInt = 10
    deterministic: bool = False
    channels_last: bool = True  # convolution weights in channels-last memory: faster steps, same numbers


# ----------------------------------------------------------------------------- versions

CONFIG_VERSION = 2  # 1: runs saved before config_version existed (eastmir of 2026-11-26); 2: the version is recorded


def _from_1(config: dict) -> dict:
    """Version 1 → 2: no key was renamed or removed; the version is written from now on."""
    return config


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _from_1}  # version → the step to the next version


def migrate(config: dict, source: str = "config") -> dict:
    """A saved run config brought to :data:`CONFIG_VERSION` (no ``config_version``: version 1), one step at a
    time, so a run saved by an earlier release still loads when a key is renamed or removed later. A config
    from a newer release is refused in one line."""
    config = dict(config)
    version = config.pop("config_version", 1)
    if not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: config_version must be a whole number from 1, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"{source}: written by a newer eastmir (config version {version}; this one reads up to "
            f"{CONFIG_VERSION}); upgrade eastmir to load it"
        )
    while version < CONFIG_VERSION:
        config = MIGRATIONS[version](config)
        version += 1
    return {**config, "config_version": CONFIG_VERSION}


class RunConfig(Section):
    config_version: int = Field(CONFIG_VERSION, ge=CONFIG_VERSION, le=CONFIG_VERSION)  # older: migrate() first
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # the run directory's name
    system: str | None = None  # how tables name the system (EAsT_Final, …)
    seed: int = 0
    task: Literal["multilabel", "single_label"] | None = None  # None: the dataset's own, else multilabel
    workdir: PathStr
    cache_dir: PathStr | None = None  # the store; default {workdir}/cache
    threads: PositiveInt | None = None
    requires: list[str] = []  # configs to run first (KD needs its TeacherLR run)
    data: DataSection
    frontend: FrontendConfig = FrontendConfig()
    student: ComponentSection
    teacher: ComponentSection | None = None
    distillation: DistillationSection | None = None
    augment: AugmentSection | None = None
    optimizer: OptimizerSection = OptimizerSection()
    scheduler: SchedulerSection = SchedulerSection()
    trainer: TrainerSection = TrainerSection()

    @model_validator(mode="after")
    def _defaults(self) -> RunConfig:
        if self.cache_dir is None:
            self.cache_dir = os.path.join(self.workdir, "cache")
        return self


# ----------------------------------------------------------------------------- unknown keys


def _fields(annotation: Any) -> dict[str, Any] | None:
    """The fields (key → annotation) of a model or dataclass type inside ``annotation``, if any."""
    candidates = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(annotation))
    for cls in candidates:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            if cls.model_config.get("extra") == "allow":
                return None  # options checked against the component's signature instead
            return {(f.alias or k): f.annotation for k, f in cls.model_fields.items()}
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls)
            return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return None


def unknown_keys(data: Any, annotation: Any, prefix: str = "") -> list[str]:
    """Messages for every key of ``data`` that the model ``annotation`` does not have, with suggestions."""
    fields = _fields(annotation)
    if fields is None or not isinstance(data, dict):
        return []
    problems = []
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            shown = where + (f".{next(iter(value))}" if isinstance(value, dict) and len(value) == 1 else "")
            problems.append(f"unknown key {shown}{_suggest(str(key), value, fields, prefix)}")
        else:
            problems += unknown_keys(value, fields[key], f"{where}.")
    return problems


def _suggest(key: str, value: Any, fields: dict[str, Any], prefix: str) -> str:
    """`` (did you mean trainer.max_epochs?)``: the closest key, followed by the rest of the user's path."""
    hint = did_you_mean(key, fields)
    if not hint:
        return ""
    close = hint.removeprefix(" (did you mean ").removesuffix("?)")
    rest = ""
    if isinstance(value, dict) and len(value) == 1:
        (sub, _), inner = next(iter(value.items())), _fields(fields[close]) or {}
        if sub in inner:
            rest = f".{sub}"
    return f" (did you mean {prefix}{close}{rest}?)"


# ----------------------------------------------------------------------------- errors


TYPE_WORDS = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value, …)",
    "model_type": "expected a mapping (key: value, …)",
    "dataclass_type": "expected a mapping (key: value, …)",
    "list_type": "expected a list",
    "missing": "required, but not set",
    "missing_argument": "required, but not set",
    "unexpected_keyword_argument": "unknown key",
    "extra_forbidden": "unknown key",
    "string_pattern_mismatch": "use letters, digits and . _ + - only (it names the run directory)",
    "literal_error": None,
    "finite_number": "must be a finite number",
}


RANGE_WORDS = {
    "greater_than": "above",
    "greater_than_equal": "at least",
    "less_than": "below",
    "less_than_equal": "at most",
}


def _describe(error: dict, prefix: str) -> str:
    """One pydantic error as ``key.path: what was expected, got VALUE``."""
    loc = [str(p) for p in error["loc"]]
    # pydantic adds the branch it tried to the location of union fields: drop those parts
    loc = [p for p in loc if not any(c in p for c in "[]()") and p not in ("int", "str", "float", "bool", "list")]
    where = prefix + ".".join(loc)
    kind = error["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown key {where}"
    bound = RANGE_WORDS.get(kind)
    if bound is not None:
        limit = next(iter((error.get("ctx") or {}).values()), "?")
        words = f"must be {bound} {limit}"
    else:
        words = TYPE_WORDS.get(kind) or error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    got = "" if kind.startswith("missing") or isinstance(shown, dict) else f", got {shown!r}"
    return f"{where}: {words}{got}" if where else f"{words}{got}"


def format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    seen, out = set(), []
    for error in err.errors():
        text = _describe(error, prefix)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# ----------------------------------------------------------------------------- component options


def options_model(obj: Callable, skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A model of the keyword options ``obj`` (a class, dataclass or function) accepts, from its signature."""
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj)
        for f in dataclasses.fields(obj):
            if f.name in skip:
                continue
            if f.default is not dataclasses.MISSING:
                fields[f.name] = (hints[f.name], f.default)
            elif f.default_factory is not dataclasses.MISSING:
                fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
            else:
                fields[f.name] = (hints[f.name], ...)
    else:
        target = obj.__init__ if isinstance(obj, type) else obj
        hints = typing.get_type_hints(target)
        for name, param in inspect.signature(target).parameters.items():
            if name in ("self", "progress", *skip) or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = ... if param.default is param.empty else param.default
            annotation = hints.get(name, Any)
            if annotation is Path or annotation == Path | None:
                annotation = PathStr | None if default is None else PathStr
            fields[name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{getattr(obj, '__name__', 'component')}Options", __config__=config, **fields)


def check_options(
    registry: Registry, section: dict, where: str, skip: tuple[str, ...] = (), extra: tuple[str, ...] = ()
) -> tuple[dict, list[str]]:
    """Validate a ``{name, ...options}`` section; returns (the section, coerced) and its problems.

    ``extra`` names section keys handled by the caller (e.g. a regulariser's
    ``stages``), passed through unchecked.
    """
    name = section.get("name")
    try:
        component = registry.get(name)
    except UnknownNameError as err:
        return section, [f"{where}.name: {err}"]
    options = {k: v for k, v in section.items() if k != "name" and k not in extra}
    model = options_model(component, skip)
    fields = {k for k in model.model_fields}
    problems = [
        f"unknown key {where}.{k} for {registry.kind} {name}{_suggest(k, None, dict.fromkeys(fields), where + '.')}"
        f"; valid: {', '.join(sorted(fields)) or '(none)'}"
        for k in options
        if k not in fields
    ]
    if problems:
        return section, problems
    try:
        checked = model.model_validate(options).model_dump(mode="json", exclude_unset=True)
    except ValidationError as err:
        return section, format_errors(err, f"{where}.")
    return {"name": name, **{k: section[k] for k in extra if k in section}, **checked}, []


def check_dataset_options(dataset: str, options: dict, where: str = "") -> dict:
    """A dataset's ``prepare`` options, checked against its signature (raises :class:`ConfigError`)."""
    prepare = DATASETS.get(dataset)
    schema = getattr(prepare, "options_schema", None)  # synth: a dataclass of settings
    model = options_model(schema or prepare, skip=("root",))
    problems = unknown_keys(options, model, where)
    if problems:
        valid = ", ".join(sorted(model.model_fields))
        raise ConfigError(f"{dataset}: " + "; ".join(problems) + f"; valid options: {valid}")
    try:
        return model.model_validate(options).model_dump(mode="python", exclude_unset=True)
    except ValidationError as err:
        raise ConfigError(f"{dataset}: " + "; ".join(format_errors(err, where))) from None


# ----------------------------------------------------------------------------- the run config


def _stage_count(student: str) -> int:
    return len(STUDENTS.get(student).stage_hops)


def validate_config(raw: dict, source: str = "config") -> dict:
    """Check ``raw`` against the schema and the registered components; returns the complete plain dict.

    ``source`` names the config in messages. Raises one :class:`ConfigError`
    listing every problem found.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(raw).__name__}")
    problems = unknown_keys(raw, RunConfig)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: " + "; ".join(format_errors(err))) from None
    out = config.model_dump(mode="json", by_alias=True)

    student, problems = check_options(STUDENTS, out["student"], "student", skip=("num_classes", "embedding_dim"))
    out["student"] = student
    if out["teacher"] is not None:
        out["teacher"], more = check_options(TEACHERS, out["teacher"], "teacher")
        problems += more or _check_members(out["teacher"])
    dist = out["distillation"]
    if dist and dist["feature"]:
        dist["feature"], more = check_options(
            REGULARISERS, dist["feature"], "distillation.feature", ("student_dim", "teacher_dim"), ("stages", "weight")
        )
        problems += more
    if not problems:
        problems = _combinations(out)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return out


def teacher_label(section: dict | None) -> str | None:
    """How tables name a config's teacher: its ``id`` (precomputed files), its name, or an ensemble's
    members joined by ``+``."""
    if not section:
        return None
    if section.get("name") == "ensemble":
        return "+".join(str(teacher_label(m)) for m in section.get("members") or [])
    return section.get("id") or section.get("name")


def teacher_section(spec: str, options: dict | None = None) -> dict:
    """``aisfx`` (one teacher) or ``musicnn+aisfx`` (an ensemble of them) with ``options`` → a checked
    ``teacher:`` section; raises :class:`ConfigError` naming every problem."""
    if "+" in spec:
        section = {"name": "ensemble", "members": [{"name": n} for n in spec.split("+") if n], **(options or {})}
    else:
        section = {"name": spec, **(options or {})}
    section, problems = check_options(TEACHERS, section, "teacher")
    problems = problems or _check_members(section)
    if problems:
        raise ConfigError("; ".join(problems))
    return section


def _check_members(teacher: dict) -> list[str]:
    """An ensemble's members, each checked as a teacher section (coerced in place); its weights."""
    if teacher["name"] != "ensemble":
        return []
    members, problems = teacher.get("members") or [], []
    for i, member in enumerate(members):
        where = f"teacher.members[{i}]"
        if not isinstance(member, dict) or "name" not in member:
            problems.append(f"{where}: give a teacher section such as {{name: aisfx}}")
            continue
        if member["name"] == "ensemble":
            problems.append(f"{where}: an ensemble cannot be a member; list its teachers instead")
            continue
        members[i], more = check_options(TEACHERS, member, where)
        problems += more
    weights = teacher.get("weights")
    if weights is not None and (len(weights) != len(members) or any(w < 0 for w in weights) or not sum(weights)):
        problems.append(f"teacher.weights: {len(members)} non-negative numbers, not all zero, one per member")
    if len(members) < 2:
        problems.append("teacher.members: an ensemble needs at least two teachers")
    return problems


def _combinations(cfg: dict) -> list[str]:
    """Problems of combination that no single field shows."""
    problems = []
    student = cfg["student"]["name"]
    dist = cfg["distillation"] or {}
    params = inspect.signature(STUDENTS.get(student).__init__).parameters
    for key, what in (("n_mels", "mel bands"), ("sample_rate", "Hz audio")):
        if key in params:
            value = cfg["student"].get(key, params[key].default)
            if value != cfg["frontend"][key]:
                problems.append(
                    f"student.n_mels is {value} but the front end makes {cfg['frontend'][key]} {what} "
                    f"(frontend.{key}); set both to the same value".replace("n_mels", key)
                )
    learns_from_teacher = dist.get("feature") or dist.get("kd") or student == "linear_probe"
    if learns_from_teacher and not cfg["teacher"]:
        problems.append("this system learns from a teacher: set `teacher: {name: ...}`")
    if student == "linear_probe" and (dist.get("feature") or dist.get("kd")):
        problems.append("student linear_probe (TeacherLR) reads the embedding itself: drop `distillation`")
    feature = dist.get("feature")
    if feature:
        n = _stage_count(student)
        stages = feature["stages"]
        for s in [stages] if isinstance(stages, int) else [] if stages == "all" else stages:
            if not -n <= s < n:
                problems.append(
                    f"distillation.feature.stages: {student} has {n} stages (0..{n - 1} or -1..-{n}), got {s}"
                )
        if isinstance(stages, list) and not stages:
            problems.append("distillation.feature.stages: give 'all' or at least one stage")
        if feature.get("estimator") == "unbiased" and cfg["data"]["batch_size"] < 4:
            problems.append(
                "distillation.feature.estimator: unbiased needs at least 4 clips per batch (n(n-3) > 0); "
                f"data.batch_size is {cfg['data']['batch_size']}"
            )
    if cfg["teacher"]:
        options = {k: v for k, v in cfg["teacher"].items() if k != "name"}
        refusal = TEACHERS.get(cfg["teacher"]["name"]).refuses(cfg["data"]["dataset"], options)
        if refusal:
            problems.append(f"teacher: {refusal}")
    aug = cfg["augment"] or {}
    if (aug.get("fmin_jitter") or aug.get("fmax_jitter")) and STUDENTS.get(student).input_key != "logmel":
        problems.append(f"augment.fmin_jitter/fmax_jitter jitter a log-mel front end, which {student} does not read")
    return problems


def input_key_for(config: dict) -> str:
    """What a run's data module serves: the student's input (``logmel``,
    ``waveform`` or ``embedding``), or ``waveform`` when a frequency jitter
    makes the log-mel per batch."""
    key = STUDENTS.get(config["student"]["name"]).input_key
    aug = config.get("augment") or {}
    if key == "logmel" and (aug.get("fmin_jitter") or aug.get("fmax_jitter")):
        return "waveform"
    return key
