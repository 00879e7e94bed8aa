"""One generic name → class registry, used for students, teachers, datasets,
regularisers, optimisers, LR schedulers and teacher compressions, so no module needs an
if/elif chain over names: a new component is one file that registers itself.

Each registry knows the package whose import registers its built-in entries,
and imports it lazily on first use (nothing is read or imported at import
time of :mod:`eastmir`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from eastmir.errors import UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps snake_case names (``mobile_fcn``, ``aisfx``) to classes or factories."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self._package = package
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@STUDENTS.register("mobile_fcn")``."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plug-in unloaded, or a test's own component)."""
        self._entries.pop(name, None)

    def _load_builtins(self) -> None:
        if self._package is not None:
            importlib.import_module(self._package)

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name fails naming the closest and every valid one."""
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = ", ".join(self.names()) or "(none)"
            hint = did_you_mean(str(name), self.names())
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; valid {self.kind}s: {valid}") from None

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries


STUDENTS: Registry = Registry("student", "eastmir.students")
TEACHERS: Registry = Registry("teacher", "eastmir.teachers")
DATASETS: Registry = Registry("dataset", "eastmir.data.datasets")
REGULARISERS: Registry = Registry("regulariser", "eastmir.losses")
OPTIMISERS: Registry = Registry("optimiser", "eastmir.training.optimisers")
SCHEDULERS: Registry = Registry("scheduler", "eastmir.training.optimisers")
COMPRESSIONS: Registry = Registry("compression", "eastmir.training.compression")
