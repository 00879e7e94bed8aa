"""Run configs: composed from YAML (:mod:`~eastmir.config.compose`), validated into one frozen, typed
:class:`RunConfig` (:mod:`~eastmir.config.schema`, :mod:`~eastmir.config.rules`, with the messages of
:mod:`~eastmir.config.messages`), versioned and migrated (:mod:`~eastmir.config.versions`).

Below the command line and the file edges every module reads a :class:`RunConfig`'s attributes; plain
dicts are only what YAML, ``--set`` and saved runs hold.
"""

from eastmir.config.compose import (
    RunTable,
    deep_merge,
    load_config,
    on_training_share,
    parse_overrides,
    probe_note,
    run_tables,
    shipped_config_dir,
    shipped_names,
    with_name_suffix,
    with_teacher,
)
from eastmir.config.rules import check_dataset_options, check_options, teacher_section, validate_config
from eastmir.config.schema import RunConfig, TeacherSection, teacher_label
from eastmir.config.versions import ADDED_KEYS, CONFIG_VERSION, migrate
from eastmir.errors import ConfigError

__all__ = [
    "ADDED_KEYS",
    "CONFIG_VERSION",
    "ConfigError",
    "RunConfig",
    "RunTable",
    "TeacherSection",
    "check_dataset_options",
    "check_options",
    "deep_merge",
    "load_config",
    "migrate",
    "on_training_share",
    "parse_overrides",
    "probe_note",
    "run_tables",
    "shipped_config_dir",
    "shipped_names",
    "teacher_label",
    "teacher_section",
    "validate_config",
    "with_name_suffix",
    "with_teacher",
]
