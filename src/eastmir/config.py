"""YAML run configs: one file = one run.

A file may ``extends:`` another file or a list of files (paths relative to
itself, merged in order); mappings are merged deeply, the extending file
winning. ``--set a.b=value`` overrides
(values parsed as YAML) come last. ``{workdir}`` in any string is replaced
by the work directory, so no path depends on the current directory.
The resolved config is saved in the run directory.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config is malformed or asks for an impossible combination."""


def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into ``base``. A mapping naming another component
    (a different ``name:``, e.g. another student) replaces the base mapping
    instead of being merged into it, so no stale keyword leaks across."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        renamed = (
            isinstance(value, dict)
            and isinstance(old, dict)
            and "name" in value
            and old.get("name", value["name"]) != value["name"]
        )
        if isinstance(value, dict) and isinstance(old, dict) and not renamed:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def shipped_config_dir() -> Path:
    """The configs shipped inside the package (``configs/`` in the repository)."""
    return Path(str(resources.files("eastmir") / "configs"))


def find_config(name_or_path: str | Path) -> Path:
    """A path, or a name under the shipped configs (``synth/east_final``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_config_dir() / (
        str(name_or_path) if str(name_or_path).endswith(".yaml") else f"{name_or_path}.yaml"
    )
    if shipped.is_file():
        return shipped
    raise ConfigError(f"{name_or_path}: no such config file (nor a shipped config under {shipped_config_dir()})")


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `extends` cycle through {[str(p) for p in chain]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    parents = data.pop("extends", None) or []
    base: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        base = deep_merge(base, _read_yaml(path.parent / parent, chain + (path,)))
    return deep_merge(base, data)


def parse_overrides(items: list[str] | None) -> dict:
    """``["a.b=1", "c=[1,2]"]`` → nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return out


def _substitute(node: Any, workdir: str) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, workdir) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, workdir) for v in node]
    if isinstance(node, str):
        return node.replace("{workdir}", workdir)
    return node


def load_config(path: str | Path, overrides: list[str] | None = None, workdir: str | Path | None = None) -> dict:
    """Read, merge, override and resolve ``{workdir}``; returns a plain dict."""
    cfg = _read_yaml(find_config(path))
    cfg = deep_merge(cfg, parse_overrides(overrides))
    if workdir is not None:
        cfg["workdir"] = str(Path(workdir).resolve())
    if "workdir" not in cfg:
        raise ConfigError("no work directory: pass --workdir DIR (or set `workdir:` in the config)")
    return _substitute(cfg, cfg["workdir"])
