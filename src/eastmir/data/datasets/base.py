"""What a dataset declares: the class every dataset adapter is, as students and teachers are classes.

A dataset is registered in :data:`eastmir.registry.DATASETS` under the name
configs use (``data.dataset``) and states what it is, so nothing downstream
keeps a table keyed by dataset names:

- ``num_classes``: its fixed number of classes (``None``: from the data, as a folder of your own);
- ``task``: ``multilabel`` or ``single_label`` (``None``: chosen from the labels);
- ``clip_seconds``: its clips' usual length (``None``: they vary);
- ``archives``: the official archives ``eastmir data prepare --download`` fetches (empty: none);
- ``authors_classes``: the class order of the authors' trained students, for ``eastmir zoo``;
- ``options``: a dataclass of its ``prepare`` options (``None``: ``prepare``'s keyword arguments);
- ``prepare(root, progress, **options)``: writes ``root/manifest.json`` and returns the
  :class:`~eastmir.data.manifest.Manifest`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from eastmir.data.download import Archive
from eastmir.data.manifest import Manifest
from eastmir.errors import ConfigError


@dataclass(frozen=True)
class ClassNames:
    """A dataset's class names in the order of someone's label vectors, where that order came from, and the
    groups of names whose order is uncertain (ties)."""

    names: list[str]
    source: str
    ties: list[list[str]] = field(default_factory=list)


class Dataset:
    """A dataset eastmir can prepare (see the module docstring); subclasses set the class attributes."""

    num_classes: ClassVar[int | None] = None
    task: ClassVar[str | None] = None
    clip_seconds: ClassVar[float | None] = None
    archives: ClassVar[tuple[Archive, ...]] = ()
    options: ClassVar[type | None] = None

    @classmethod
    def authors_classes(cls, annotations: str | Path | None, who: str) -> ClassNames:
        """The class names in the order the authors' trained students output them (``eastmir zoo``);
        ``annotations``: the file that order is read from, where one is needed; ``who`` names the student."""
        raise ConfigError(f"{who}: the authors published no trained student for this dataset")

    @staticmethod
    def prepare(root: str | Path, progress: bool = True, **options: Any) -> Manifest:
        """Write ``root/manifest.json`` from the dataset's files under ``root``."""
        raise NotImplementedError
