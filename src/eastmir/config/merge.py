"""Merging nested config mappings (YAML files, overrides): the one rule every config layer uses."""

from __future__ import annotations

import copy


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
