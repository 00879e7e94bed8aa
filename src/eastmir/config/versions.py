"""Config versions: every saved run records the version of the config schema it was written with, and
:func:`migrate` brings an older one up to today's, one step per version, so runs saved by an earlier
release keep loading when a key is renamed or removed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eastmir.errors import ConfigError
from eastmir.frontend import ADDED_DEFAULTS

CONFIG_VERSION = 3
# 1: runs saved before config_version existed (eastmir of 2026-11-26); 2: the version is recorded;
# 3: scheduler.name (the one schedule before it, ReduceLROnPlateau, is its default "plateau");
#    frontend.preemphasis / window / pad_mode (their defaults are the front end before them);
#    trainer.validation_loss (its default, prediction, is what val_loss was);
#    distillation.feature.align (its default, periods, is not what runs before did: they resume only with ceil);
#    augment.style and augment.mixup_partner (likewise: runs before resume only with eastmir and batch)

# Keys added after version 1, with the value that does what a run saved without them did: a run started
# before a key existed resumes under it (the fingerprint check takes the missing key as this value). A
# component's own added options are its class's (Student.added_options): RunConfig.added_keys joins them.
ADDED_KEYS: dict[str, Any] = {
    "scheduler.name": "plateau",
    "trainer.validation_loss": "prediction",
    "distillation.feature.align": "ceil",  # what a run saved before did; its default is now periods
    "augment.style": "eastmir",  # likewise; its default is now the authors' augmentation
    "augment.mixup_partner": "batch",  # likewise; its default is now a partner from the whole training set
    "trainer.min_steps": 0,  # no floor: what every run before it did
    **{f"frontend.{k}": v for k, v in ADDED_DEFAULTS.items()},  # the authors' front end is a choice since 3
}


def _from_1(config: dict) -> dict:
    """Version 1 → 2: no key was renamed or removed; the version is written from now on."""
    return config


def _from_2(config: dict) -> dict:
    """Version 2 → 3: ``scheduler.name`` is new; its default, ``plateau``, is the schedule version 2 ran."""
    return config


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _from_1, 2: _from_2}  # version → the step to the next


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
