"""The typed run config: frozen pydantic models, one per section, passed down to every layer.

Built on pydantic (v2): it is the maintained library that validates nested
typed models with coercion, per-field constraints and error locations,
validates stdlib dataclasses we already have (the front end's
:class:`~eastmir.frontend.FrontendConfig`), and builds a model from a function
signature (:mod:`eastmir.config.rules` checks each component's options
against the code itself). (OmegaConf structured configs cannot type the
per-component options; jsonargparse would also own the command line.)

A :class:`RunConfig` is made by :func:`eastmir.config.validate_config` only
and never changes: code below the command line reads its attributes
(``config.data.batch_size``, ``config.student.options``) and derived facts
(:attr:`RunConfig.input_key`, :attr:`RunConfig.teacher_label`), and a
changed copy is made with :meth:`RunConfig.changed`. Plain dicts exist only
at the edges: the YAML files, ``--set`` overrides, ``config.yaml`` and the
checkpoints (:meth:`RunConfig.to_dict`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
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
    field_validator,
    model_validator,
)

from eastmir.config.merge import deep_merge
from eastmir.config.versions import ADDED_KEYS, CONFIG_VERSION
from eastmir.frontend import FrontendConfig
from eastmir.inputs import InputKind
from eastmir.numbers import ClipSeconds, Fraction, Seed, Threads, TrainingBatchSize, Workers
from eastmir.registry import STUDENTS, TEACHERS


def absolute_path(value: str) -> str:
    """A path as given, made absolute against the current directory (``~`` expanded)."""
    return os.path.abspath(os.path.expanduser(value))


PathStr = Annotated[str, AfterValidator(absolute_path)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False, frozen=True)


class DataSection(Section):
    """Which prepared dataset a run reads, and how."""

    dataset: str
    root: PathStr  # the folder `eastmir data prepare` wrote manifest.json into
    clip_seconds: ClipSeconds | None = None  # None: the most common clip duration of the manifest
    batch_size: TrainingBatchSize = 16  # BatchNorm needs two clips; with DDP: the global batch
    num_workers: Workers = 0
    on_error: Literal["raise", "skip"] = "raise"
    stream: str | None = None  # a folder or bucket URL written by `eastmir pack`: read shards, not the store
    train_fraction: Fraction = 1.0  # train on a nested seeded subset (eastmir.data.subsets)
    subset_seed: Seed = 0  # which nested subsets; independent of the training seed

    @field_validator("stream")
    @classmethod
    def _local_stream_absolute(cls, value: str | None) -> str | None:
        return absolute_path(value) if value and "://" not in value else value


class ComponentSection(BaseModel):
    """``{name, ...options}``: the options are checked against the component's constructor
    (:func:`eastmir.config.rules.check_options`)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        """The component's keyword options (every key but ``name`` and the section's own fields), a copy."""
        return copy.deepcopy(dict(self.model_extra or {}))


class StudentSection(ComponentSection):
    @property
    def capabilities(self) -> type:
        """The registered student class: what it reads, whether it is a probe, its complexity settings."""
        return STUDENTS.get(self.name)


class TeacherSection(ComponentSection):
    @property
    def is_ensemble(self) -> bool:
        return bool(getattr(TEACHERS.get(self.name), "is_ensemble", False))

    @property
    def members(self) -> list[TeacherSection]:
        """An ensemble's member sections (empty for one teacher)."""
        return [TeacherSection.model_validate(m) for m in (self.options.get("members") or [])]

    @property
    def label(self) -> str:
        """How tables name the teacher: its ``id`` (precomputed files), its name, or an ensemble's members
        joined by ``+``."""
        if self.name in TEACHERS and self.is_ensemble:
            return "+".join(member.label for member in self.members)
        return str(self.options.get("id") or self.name)


def teacher_label(section: dict | None) -> str | None:
    """:attr:`TeacherSection.label` of a plain ``teacher:`` mapping (a saved config's); ``None`` without one."""
    return TeacherSection.model_validate(section).label if section else None


class FeatureSection(ComponentSection):
    stages: Literal["all"] | list[int] | int = [-1]
    weight: NonNegativeFloat = 1.0
    # time alignment (eastmir.losses.alignment): periods (the authors'), ceil (eastmir before 2026-11-30), or
    # [k_student, k_teacher] repeat factors as given
    align: Literal["periods", "ceil"] | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] = "periods"


class KDSection(Section):
    weight: NonNegativeFloat = 1.0
    temperature: PositiveFloat = 2.0
    hard: bool = False
    teacher_run: PathStr  # a finished TeacherLR run directory


class CompressionSection(Section):
    name: str = "linear"  # registered in eastmir.registry.COMPRESSIONS


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
    # authors: mixup weights folded to ≥ 0.5, SpecAugment per clip before mixing with masks at log 0 (before the
    # normalisation), the band edges jittered per clip, fmin only up and fmax only down (their featurizer);
    # eastmir: eastmir before 2026-11-30 (unfolded weights, masks at 0 after mixing, one ± jitter per batch)
    style: Literal["authors", "eastmir"] = "authors"
    mixup_alpha: NonNegativeFloat = 0.0
    # training_set (the authors'): each clip's partner is drawn from the whole training split, a fresh draw per
    # clip and epoch; batch: a shuffled copy of the same batch (eastmir before 2026-11-30)
    mixup_partner: Literal["training_set", "batch"] = "training_set"
    spec_augment: SpecAugmentSection | None = None
    fmin_jitter: NonNegativeFloat = 0.0  # Hz
    fmax_jitter: NonNegativeFloat = 0.0  # Hz

    @property
    def jitters(self) -> bool:
        """Whether the front end's band edges are jittered (the log-mel is then made per batch)."""
        return bool(self.fmin_jitter or self.fmax_jitter)


class OptimizerSection(Section):
    name: str = "adam"  # registered in eastmir.registry.OPTIMISERS
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = 0.0


class SchedulerSection(Section):
    """The learning-rate schedule; ``plateau``: ReduceLROnPlateau on the validation loss."""

    name: str = "plateau"  # registered in eastmir.registry.SCHEDULERS (added in config version 3)
    factor: float = Field(0.2, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 5


class TrainerSection(Section):
    max_epochs: PositiveInt = 100
    max_steps: int = Field(-1, ge=-1)
    early_stop_patience: NonNegativeInt = 12  # epochs without a lower validation loss
    # optimizer steps before early stopping or the learning-rate plateau may act: patience counts epochs, and an
    # epoch of a small dataset is a few steps, so without a floor both acted before a student had learned
    min_steps: NonNegativeInt = 0
    # val_loss, which the LR plateau and early stopping watch: the prediction loss alone, or the total
    # (1 − λ)·L_pred + λ·L_reg on the validation batches (the authors'; the paper recipes set it)
    validation_loss: Literal["prediction", "total"] = "prediction"
    gradient_clip_val: NonNegativeFloat | None = 1.0
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: PositiveInt = 1
    precision: str | int = "32-true"
    log_every_n_steps: PositiveInt = 10
    deterministic: bool = False
    channels_last: bool = True  # convolution weights in channels-last memory: faster steps, same numbers
    # torch.compile of the student for training (its mode; "reduce-overhead" also replays CUDA graphs on a GPU):
    # fewer, fused kernels per step after a compilation of a minute or more at the start; "off" runs eagerly
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"
    cudnn_benchmark: bool = True  # cuDNN times its convolution algorithms once per shape (off when deterministic)


NO_AUGMENT = AugmentSection()


# The full check of a config (rules.validate_config: registries, component options, combinations): it lives
# above this module, which only declares the schema; it registers itself here so RunConfig.changed can use it.
_VALIDATOR: Callable[[dict[str, Any], str], RunConfig] | None = None


def use_validator(validate: Callable[[dict[str, Any], str], RunConfig]) -> None:
    """Set the function :meth:`RunConfig.changed` checks its result with (``eastmir.config.rules`` calls this)."""
    global _VALIDATOR
    _VALIDATOR = validate


class RunConfig(Section):
    config_version: int = Field(CONFIG_VERSION, ge=CONFIG_VERSION, le=CONFIG_VERSION)  # older: migrate() first
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # the run directory's name
    system: str | None = None  # how tables name the system (EAsT_Final, …)
    seed: Seed = 0
    task: Literal["multilabel", "single_label"] | None = None  # None: the dataset's own, else multilabel
    workdir: PathStr
    cache_dir: PathStr | None = None  # the store; default {workdir}/cache
    threads: Threads | None = None
    requires: list[str] = []  # configs to run first (KD needs its TeacherLR run)
    data: DataSection
    frontend: FrontendConfig = FrontendConfig()
    student: StudentSection
    teacher: TeacherSection | None = None
    distillation: DistillationSection | None = None
    augment: AugmentSection | None = None
    optimizer: OptimizerSection = OptimizerSection()
    scheduler: SchedulerSection = SchedulerSection()
    trainer: TrainerSection = TrainerSection()

    @model_validator(mode="before")
    @classmethod
    def _default_cache(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("cache_dir") is None and isinstance(data.get("workdir"), str):
            data = {**data, "cache_dir": os.path.join(absolute_path(data["workdir"]), "cache")}
        return data

    # ------------------------------------------------------------ derived facts
    @property
    def feature(self) -> FeatureSection | None:
        """The feature-map regulariser (``distillation.feature``), if any."""
        return self.distillation.feature if self.distillation else None

    @property
    def kd(self) -> KDSection | None:
        return self.distillation.kd if self.distillation else None

    @property
    def compression(self) -> CompressionSection | None:
        return self.distillation.compression if self.distillation else None

    @property
    def lam(self) -> float:
        """λ of ``(1-λ)·L_pred + λ·L_reg``."""
        return self.distillation.lambda_ if self.distillation else 0.0

    @property
    def augmentation(self) -> AugmentSection:
        """``augment``, or no augmentation."""
        return self.augment or NO_AUGMENT

    @property
    def input_key(self) -> InputKind:
        """What a run's data module serves: the student's input (:class:`~eastmir.inputs.InputKind`), or the
        waveform when a frequency jitter makes the log-mel per batch."""
        key = InputKind(self.student.capabilities.input_key)
        return InputKind.WAVEFORM if key.reads_logmel and self.augmentation.jitters else key

    @property
    def task_kind(self) -> str:
        """``multilabel`` or ``single_label``: the task once the dataset filled it in, else multilabel."""
        return self.task or "multilabel"

    @property
    def added_keys(self) -> dict[str, Any]:
        """Keys added since runs were saved, with the value that does what those runs did: the schema's
        (:data:`~eastmir.config.versions.ADDED_KEYS`) and this run's student's own
        (``Student.added_options``), for the fingerprint check of a run started before them."""
        student = getattr(self.student.capabilities, "added_options", {})
        return {**ADDED_KEYS, **{f"student.{k}": v for k, v in student.items()}}

    @property
    def system_label(self) -> str:
        """How tables name the system: ``system``, else the run's name."""
        return self.system or self.name

    @property
    def teacher_label(self) -> str | None:
        return self.teacher.label if self.teacher else None

    @property
    def learns_from_teacher(self) -> bool:
        """Whether the run reads teacher embeddings: it distils, or its student is a probe on them."""
        return bool(self.feature or self.kd or self.student.capabilities.is_probe)

    # ----------------------------------------------------------------- edges
    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values, keys as written in YAML (``lambda``): for ``config.yaml``, the
        fingerprint and checkpoints."""
        return self.model_dump(mode="json", by_alias=True)

    def changed(self, changes: dict[str, Any], source: str | None = None) -> RunConfig:
        """A checked copy with ``changes`` (nested, as in YAML) merged in, through the full config check
        (:func:`eastmir.config.rules.validate_config`, which registers itself here when the package loads)."""
        if _VALIDATOR is None:
            raise RuntimeError("eastmir.config.rules is not loaded: import eastmir.config")
        return _VALIDATOR(deep_merge(self.to_dict(), changes), source or self.name)
