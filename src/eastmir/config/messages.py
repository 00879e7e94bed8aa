"""Messages of the config checks: unknown keys with the closest valid one, and pydantic's errors as
``key.path: what was expected, got VALUE``."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from eastmir.errors import did_you_mean


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
            problems.append(f"unknown key {shown}{suggest_key(str(key), value, fields, prefix)}")
        else:
            problems += unknown_keys(value, fields[key], f"{where}.")
    return problems


def suggest_key(key: str, value: Any, fields: dict[str, Any], prefix: str) -> str:
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
