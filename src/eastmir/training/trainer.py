"""The Lightning ``Trainer`` of a run, set up from the config's ``trainer`` section.

Callbacks: the best checkpoint by the validation metric (its score in the file
name) plus ``last.ckpt`` written after every epoch (the one a run resumes
from); early stopping on the validation loss; the RNG
states in every checkpoint (:class:`~eastmir.training.checkpoints.RngState`).
Checkpoints are written atomically and read with ``weights_only=True``. Logs
are CSV in ``<run>/logs/version_0`` (one file across resumes: the rows of an
epoch interrupted after its checkpoint are dropped before it is replayed).
DDP, several GPUs or nodes are plain Lightning settings (``trainer.strategy``,
``trainer.devices``, ``trainer.num_nodes``); the data module shards the
batches itself (``use_distributed_sampler=False``: its seeded sampler gives
every process its part of one process's batch) and BatchNorm is synchronised
across processes (:mod:`eastmir.training.batchnorm`, also on the CPU), so a DDP run computes the single-process
step (see :mod:`eastmir.training.system` for the batch-wide losses).
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from eastmir.config import RunConfig
from eastmir.errors import ConfigError, TrainingError
from eastmir.rundir import RunDirectory
from eastmir.training.checkpoints import AtomicCheckpointIO, RngState

QUIET = (  # Lightning's notes that say nothing about this run
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*isinstance.treespec, LeafSpec.*",
    r"Experiment logs directory .* exists and is not empty.*",  # KeptCSVLogger keeps the log across resumes
    r"Checkpoint directory .* exists and is not empty.*",
    r"Your `IterableDataset` has `__len__` defined.*",  # streamed splits: shards are split across workers
    r".*predict returned None.*",  # extraction writes its entries itself
)


def quiet_lightning() -> None:
    """Keep Lightning's info lines (accelerator found, tips) and known-harmless warnings off the screen."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.accelerators.cuda").setLevel(logging.WARNING)  # LOCAL_RANK: 0 - CUDA_…
    for pattern in QUIET:
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(
    config: RunConfig,
    run: RunDirectory,
    monitor: str,
    progress: bool = True,
    resuming: bool = False,
    callbacks: Sequence[Callback] = (),
) -> tuple[L.Trainer, ModelCheckpoint]:
    """The trainer and its best-checkpoint callback."""
    quiet_lightning()
    t = config.trainer
    if t.deterministic:
        # cuBLAS needs a fixed workspace for deterministic GEMMs (torch.use_deterministic_algorithms on CUDA)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    name = f"best-epoch{{epoch:03d}}-{monitor.removeprefix('val_')}{{{monitor}:.4f}}"
    best = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename=name,
        auto_insert_metric_name=False,
        monitor=monitor,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Every epoch, whatever its score (Lightning's save_last only follows a new best): what a run resumes from.
    last = ModelCheckpoint(
        dirpath=run.checkpoints, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    # checked after each validation only: a run that max_steps ends mid-epoch has no val_loss to check
    stop = EarlyStoppingFrom(t.min_steps, monitor="val_loss", mode="min", patience=t.early_stop_patience)
    trainer = lightning_trainer(
        "trainer.accelerator / devices / strategy",
        default_root_dir=run.path,
        logger=KeptCSVLogger(run.path, name="logs", version=0),  # writes run.log_file
        callbacks=[FiniteValidation(monitor), best, last, stop, RngState(), DataWait(), *callbacks],
        plugins=[AtomicCheckpointIO()],
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        # trainer.min_steps holds early stopping back (EarlyStoppingFrom) and the plateau (EastSystem); not
        # Lightning's min_steps, which keeps a stop asked for earlier and ends the run at min_steps regardless
        gradient_clip_val=t.gradient_clip_val,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        benchmark=t.cudnn_benchmark and not t.deterministic,  # cuDNN autotuning (a no-op on the CPU)
        use_distributed_sampler=False,  # ClipDataModule shards the batches itself
        num_sanity_val_steps=0 if resuming else 2,  # its loader would draw from the restored RNG
        enable_progress_bar=progress,
        enable_model_summary=False,
    )
    return trainer, best


def lightning_trainer(settings: str, **options: Any) -> L.Trainer:
    """``L.Trainer(**options)``; a device setting this machine cannot honour (``gpu`` without a CUDA device, more
    devices than it has) is one :class:`~eastmir.errors.ConfigError` line naming ``settings``, not a traceback."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(**options)
    except (MisconfigurationException, ValueError, RuntimeError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(
            f"{settings} ({options.get('accelerator')}, devices {options.get('devices')}): Lightning cannot use them "
            f"on this machine: {detail} (a GPU needs a CUDA build of torch: README, On a GPU)"
        ) from None


class EarlyStoppingFrom(EarlyStopping):
    """Early stopping on the validation loss that never stops a run before ``min_steps`` optimizer steps.

    Its patience is counted from the start (the best loss and the validations since it), but a check before
    ``min_steps`` never stops; every check from then on asks afresh whether the loss has not improved for
    ``patience`` validations. (Lightning's ``Trainer(min_steps=…)`` is not used: a stop asked for before it
    stays asked for, so a run that improved since would still end at exactly ``min_steps``.) A non-finite loss
    stops at once, as in :class:`EarlyStopping`. Checkpoints keep its state under Lightning's own key, so runs
    saved before it resume with their patience.
    """

    def __init__(self, min_steps: int, **options: Any) -> None:
        super().__init__(check_on_train_epoch_end=False, **options)
        self.min_steps = min_steps
        self._step = 0

    @property
    def state_key(self) -> str:
        return "EarlyStopping" + repr({"monitor": self.monitor, "mode": self.mode})

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        self._step = trainer.global_step
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if should_stop and self._step < self.min_steps and bool(torch.isfinite(current)):
            return False, None  # patience ran out before min_steps: the run goes on, and is asked again
        return should_stop, reason


class FiniteValidation(Callback):
    """Stop training at the first validation whose loss or monitored metric is not finite: a diverged run is
    never a result. (Lightning's early stopping would take the NaN as a reason to stop quietly, and the run would
    then be tested and reported like any other.)"""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for key in ("val_loss", self.monitor):
            value = trainer.callback_metrics.get(key)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise TrainingError(
                    f"epoch {trainer.current_epoch}: the validation {key.removeprefix('val_')} is not finite "
                    f"({float(value)}): the training diverged; lower optimizer.lr (it is "
                    f"{trainer.optimizers[0].param_groups[0]['lr'] if trainer.optimizers else '?'}) and rerun "
                    "with --overwrite"
                )


class DataWait(Callback):
    """The share of the training epochs the accelerator waited for data: from the end of one step's work to
    the start of the next, summed, over the epochs' length (:attr:`share`, ``None`` before a step).

    On a GPU the gaps are read from CUDA events on the compute stream, so a batch fetched while the GPU is still
    busy with the step before costs nothing (the CPU's clock would count it); on the CPU the step runs on the
    clock, and the gaps are the loader's time."""

    def __init__(self) -> None:
        self.waited = self.total = 0.0
        self._marks: list[tuple[str, Any]] = []  # ("epoch" | "start" | "end", clock or CUDA event)

    @property
    def share(self) -> float | None:
        return self.waited / self.total if self.total > 0 else None

    def _mark(self, trainer: L.Trainer, kind: str) -> None:
        """Note the time (a CUDA event on the compute stream on a GPU) of ``kind``: epoch, start or end."""
        device = trainer.strategy.root_device
        if device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(device))
            self._marks.append((kind, event))
        else:
            self._marks.append((kind, time.perf_counter()))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._marks = []
        self._mark(trainer, "epoch")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        self._mark(trainer, "start")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._mark(trainer, "end")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        marks, self._marks = self._marks, []
        if len(marks) < 3:
            return
        if isinstance(marks[0][1], torch.cuda.Event):
            marks[-1][1].synchronize()
            elapsed = lambda a, b: a.elapsed_time(b) / 1000  # noqa: E731 (seconds between two recorded events)
        else:
            elapsed = lambda a, b: b - a  # noqa: E731
        for (kind, before), (next_kind, after) in itertools.pairwise(marks):
            if next_kind == "start" and kind in ("epoch", "end"):
                self.waited += max(elapsed(before, after), 0.0)
        last_end = next(mark for kind, mark in reversed(marks) if kind in ("end", "epoch"))
        self.total += elapsed(marks[0][1], last_end)  # the steps, not the validation after them


def seed_run(seed: int) -> None:
    """Seed Python, numpy, torch and the data loader workers for a run (Lightning's ``seed_everything``)."""
    L.seed_everything(seed, workers=True, verbose=False)


def training_done(state: dict[str, Any], max_epochs: int) -> bool:
    """Whether the run that saved the checkpoint ``state`` had already stopped (early stopping or its last
    epoch)."""
    stopped = any(
        key.startswith("EarlyStopping") and value.get("stopped_epoch", 0) > 0
        for key, value in state.get("callbacks", {}).items()
    )
    return stopped or state.get("epoch", -1) + 1 >= max_epochs


def trim_log(path: Path, last_epoch: int | None = None) -> None:
    """Tidy the CSV log at ``path``: drop the rows of epochs after ``last_epoch`` (replayed after a resume) and
    rows repeated verbatim (Lightning logs the validation of the epoch a checkpoint was saved in again when it
    resumes from it)."""
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0].keys()) if rows else []
    seen: set[tuple] = set()
    kept = []
    for row in rows:
        if last_epoch is not None and row.get("epoch") and int(float(row["epoch"])) > last_epoch:
            continue
        if (key := tuple(row.items())) not in seen:
            seen.add(key)
            kept.append(row)
    if len(kept) != len(rows):
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)


class _KeptLogWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it continues an existing ``metrics.csv`` instead of deleting it
    (Lightning removes the file when the writer starts, so every resume lost the curves of the epochs before)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as fh:
                header = next(csv.reader(fh), [])
            self.metrics_keys = sorted(header)  # a later row with new keys rewrites the file with every old row


class KeptCSVLogger(CSVLogger):
    """A CSV logger whose one ``metrics.csv`` survives every resume."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeptLogWriter(log_dir=self.log_dir)
        return self._experiment


@contextmanager
def interrupts_as_keyboard(trainer: L.Trainer) -> Iterator[None]:
    """Ctrl-C inside a Lightning job as :class:`KeyboardInterrupt` (Lightning shuts down cleanly, then exits 1
    with no message), so the command line says "interrupted; rerun the same command" and exits 130."""
    try:
        yield
    except SystemExit as stop:
        if trainer.interrupted and type(stop).__name__ != "SIGTERMException":
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored further Ctrl-C
            raise KeyboardInterrupt from None
        raise


def fit_or_resume(
    trainer: L.Trainer,
    system: L.LightningModule,
    dm: L.LightningDataModule,
    run: RunDirectory,
    resume: Path | None,
    state: dict[str, Any] | None,
    epochs: int,
) -> None:
    """Fit (resuming from ``resume``, whose checkpoint ``state`` is read already), unless the run had already
    stopped; a diverged run is marked failed for ``report`` and never tested."""
    if state is not None:
        trim_log(run.log_file, int(state.get("epoch", -1)))
        if training_done(state, epochs):
            return
    run.failure_file.unlink(missing_ok=True)
    try:
        with interrupts_as_keyboard(trainer):
            trainer.fit(system, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except TrainingError as err:
        if trainer.is_global_zero:
            run.record_failure(str(err))
        raise TrainingError(f"{run.path}: {err}") from None
    if trainer.is_global_zero:
        trim_log(run.log_file)


def no_checkpoint_error(config: RunConfig, run: RunDirectory, steps_per_epoch: int) -> Exception:
    """Why no best checkpoint exists."""
    steps = config.trainer.max_steps
    if steps is not None and steps > 0:
        return ConfigError(
            f"trainer.max_steps: {steps} step(s) ended training before the first validation "
            f"(an epoch here has {steps_per_epoch} steps), so no checkpoint was chosen; "
            "raise trainer.max_steps to at least one epoch"
        )
    return TrainingError(f"{run.path}: training saved no checkpoint; did a validation epoch run?")
