"""The checks of a run config that no single field shows: each component's options against its
constructor, and the rules of combination (a stage the student does not have, KD without a teacher, a
student reading 96 mels from a 128-mel front end, …). :func:`validate_config` is the one way to a
:class:`~eastmir.config.schema.RunConfig`: it raises one :class:`~eastmir.errors.ConfigError` whose message
names every problem:

- an unknown key, with the closest valid one: ``unknown key trainer.max_epoch
  (did you mean trainer.max_epochs?)``;
- a wrong type or value, with the key and what it should be:
  ``trainer.max_epochs: expected an integer, got 'abc'``;
- an impossible combination.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from eastmir.config.messages import format_errors, suggest_key, unknown_keys
from eastmir.config.schema import PathStr, RunConfig, use_validator
from eastmir.errors import ConfigError, UnknownNameError
from eastmir.inputs import InputKind
from eastmir.registry import (
    COMPRESSIONS,
    DATASETS,
    OPTIMISERS,
    REGULARISERS,
    SCHEDULERS,
    STUDENTS,
    TEACHERS,
    Registry,
)


def options_model(obj: Callable, skip: tuple[str, ...] = ()) -> type[BaseModel]:
    """A model of the keyword options ``obj`` (a class, dataclass or function) accepts, from its signature."""
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(obj, include_extras=True)
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
        hints = typing.get_type_hints(target, include_extras=True)
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
        f"unknown key {where}.{k} for {registry.kind} {name}{suggest_key(k, None, dict.fromkeys(fields), where + '.')}"
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
    declared = DATASETS.get(dataset)
    model = options_model(declared.options or declared.prepare, skip=("root",))
    problems = unknown_keys(options, model, where)
    if problems:
        valid = ", ".join(sorted(model.model_fields))
        raise ConfigError(f"{dataset}: " + "; ".join(problems) + f"; valid options: {valid}")
    try:
        return model.model_validate(options).model_dump(mode="python", exclude_unset=True)
    except ValidationError as err:
        raise ConfigError(f"{dataset}: " + "; ".join(format_errors(err, where))) from None


# --- the run config


def validate_config(raw: dict, source: str = "config") -> RunConfig:
    """Check ``raw`` (a plain mapping, as read from YAML) against the schema and the registered components;
    returns the frozen, complete :class:`RunConfig` (every default filled in, every path absolute).

    ``source`` names the config in messages. Raises one :class:`ConfigError`
    listing every problem found.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(raw).__name__}")
    problems = unknown_keys(raw, RunConfig)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    try:
        out = RunConfig.model_validate(raw).to_dict()
    except ValidationError as err:
        raise ConfigError(f"{source}: " + "; ".join(format_errors(err))) from None

    student, problems = check_options(STUDENTS, out["student"], "student", skip=("num_classes", "embedding_dim"))
    out["student"] = student
    if out["teacher"] is not None:
        out["teacher"], more = check_options(TEACHERS, out["teacher"], "teacher")
        problems += more or _check_members(out["teacher"])
    dist = out["distillation"]
    if dist and dist["feature"]:
        dist["feature"], more = check_options(
            REGULARISERS,
            dist["feature"],
            "distillation.feature",
            ("student_dim", "teacher_dim"),
            ("stages", "weight", "align"),
        )
        problems += more
    problems += _registered(OPTIMISERS, out["optimizer"]["name"], "optimizer.name")
    problems += _registered(SCHEDULERS, out["scheduler"]["name"], "scheduler.name")
    if dist and dist["compression"]:
        problems += _registered(COMPRESSIONS, dist["compression"]["name"], "distillation.compression.name")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    config = RunConfig.model_validate(out)
    problems = _combinations(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def _registered(registry: Registry, name: str, where: str) -> list[str]:
    try:
        registry.get(name)
    except UnknownNameError as err:
        return [f"{where}: {err}"]
    return []


def teacher_section(spec: str, options: dict | None = None) -> dict:
    """``aisfx`` (one teacher) or ``musicnn+aisfx`` (an ensemble of them) with ``options`` → a checked
    ``teacher:`` section (plain, as in YAML); raises :class:`ConfigError` naming every problem."""
    if "+" in spec:
        section = {"name": _ensemble_name(), "members": [{"name": n} for n in spec.split("+") if n], **(options or {})}
    else:
        section = {"name": spec, **(options or {})}
    section, problems = check_options(TEACHERS, section, "teacher")
    problems = problems or _check_members(section)
    if problems:
        raise ConfigError("; ".join(problems))
    return section


def _ensemble_name() -> str:
    """The registered teacher that combines others (``musicnn+aisfx`` names its members)."""
    found = [n for n in TEACHERS.names() if _is_ensemble(n)]
    if not found:
        raise ConfigError("no registered teacher combines others (is_ensemble); name one teacher")
    return found[0]


def _is_ensemble(name: Any) -> bool:
    return name in TEACHERS.names() and bool(getattr(TEACHERS.get(name), "is_ensemble", False))


def _check_members(teacher: dict) -> list[str]:
    """An ensemble's members, each checked as a teacher section (coerced in place); its weights."""
    if not _is_ensemble(teacher["name"]):
        return []
    members, problems = teacher.get("members") or [], []
    for i, member in enumerate(members):
        where = f"teacher.members[{i}]"
        if not isinstance(member, dict) or "name" not in member:
            problems.append(f"{where}: give a teacher section such as {{name: aisfx}}")
            continue
        if _is_ensemble(member["name"]):
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


def _combinations(config: RunConfig) -> list[str]:
    """Problems of combination that no single field shows."""
    problems = []
    name, student = config.student.name, config.student.capabilities
    params = inspect.signature(student.__init__).parameters
    for key, what in (("n_mels", "mel bands"), ("sample_rate", "Hz audio")):
        if key in params:
            value = config.student.options.get(key, params[key].default)
            made = getattr(config.frontend, key)
            if value != made:
                problems.append(
                    f"student.{key} is {value} but the front end makes {made} {what} "
                    f"(frontend.{key}); set both to the same value"
                )
    if config.learns_from_teacher and not config.teacher:
        problems.append("this system learns from a teacher: set `teacher: {name: ...}`")
    if student.is_probe and (config.feature or config.kd):
        problems.append(f"student {name} (TeacherLR) reads the embedding itself: drop `distillation`")
    feature = config.feature
    if feature:
        n = len(student.stage_hops)
        stages = feature.stages
        for s in [stages] if isinstance(stages, int) else [] if stages == "all" else stages:
            if not -n <= s < n:
                problems.append(f"distillation.feature.stages: {name} has {n} stages (0..{n - 1} or -1..-{n}), got {s}")
        if isinstance(stages, list) and not stages:
            problems.append("distillation.feature.stages: give 'all' or at least one stage")
        if feature.options.get("estimator") == "unbiased" and config.data.batch_size < 4:
            problems.append(
                "distillation.feature.estimator: unbiased needs at least 4 clips per batch (n(n-3) > 0); "
                f"data.batch_size is {config.data.batch_size}"
            )
    if config.teacher:
        refusal = TEACHERS.get(config.teacher.name).refuses(config.data.dataset, config.teacher.options)
        if refusal:
            problems.append(f"teacher: {refusal}")
    aug = config.augmentation
    if aug.mixup_alpha > 0 and aug.mixup_partner == "training_set" and config.data.stream:
        problems.append(
            "augment.mixup_partner: training_set reads each partner by index, which streamed shards (data.stream) "
            "cannot; set augment.mixup_partner: batch"
        )
    if config.augmentation.jitters and not InputKind(student.input_key).reads_logmel:
        problems.append(f"augment.fmin_jitter/fmax_jitter jitter a log-mel front end, which {name} does not read")
    return problems


use_validator(validate_config)  # RunConfig.changed checks through this module
