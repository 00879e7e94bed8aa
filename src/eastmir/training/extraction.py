"""Teacher extraction at scale: decoding in loader workers while the network runs, batches, several devices.

The clips still to embed (:func:`~eastmir.data.fill.plan_fill`: what is
stored is skipped, so extraction resumes) are cut, in manifest order, into
batches of ``batch_size`` clips. Within a batch every clip is embedded by
its own call on one intra-op thread, the clips in parallel
(:func:`~eastmir.data.fill.compute_each`): an entry's bytes depend on its
clip alone, never on the batch size, the clips beside it, the number of
processes or threads, or where a resume started, so two processes (or GPUs,
or nodes) write the very entries one process writes.
The batches are served by a DataLoader whose ``workers`` decode the audio
while the teacher runs, and embedded by a Lightning prediction job:
``devices`` / ``strategy`` / ``num_nodes`` spread the batches over ranks
(Lightning's distributed sampler), each rank writing its entries into the
store atomically; the ranks' reports are merged at the end. Long clips are
embedded in chunks of the teacher's window (its ``block_batch`` /
``patch_batch``), so memory does not grow with clip length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from eastmir.audio import AudioDecodeError
from eastmir.data.fill import FillReport, SourceItem, compute_each, compute_threads, finish_fill, plan_fill, what
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.store import Collection
from eastmir.errors import SourceError
from eastmir.teachers.base import Teacher

RESULTS = ".extract-rank{}.jsonl"


class PlannedBatches(Dataset):
    """Batch ``i`` of the plan, decoded: ``[(clip_id, key, path, waveform or None, failure or None)]``."""

    def __init__(self, batches: list[list[tuple[SourceItem, str]]], teacher: Teacher) -> None:
        self.batches, self.teacher = batches, teacher

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[tuple[str, str, str, np.ndarray | None, str | None]]:
        out = []
        for item, key in self.batches[i]:
            try:
                out.append((item.clip_id, key, str(item.path), self.teacher.read_source(item.path), None))
            except (AudioDecodeError, SourceError) as err:
                out.append((item.clip_id, key, str(item.path), None, str(err)))
        return out


def _keep_list(batch: list) -> list:
    return batch[0]  # one planned batch per loader step


class Extraction(L.LightningModule):
    """A prediction step that embeds one planned batch and writes its entries (and this rank's results)."""

    def __init__(self, teacher: Teacher, collection: Collection) -> None:
        super().__init__()
        self.teacher = teacher
        self.folder, self.producer = collection.folder, collection.producer

    def predict_step(self, batch: list, batch_idx: int) -> None:
        target = Collection(self.folder, self.producer)
        readable = [row for row in batch if row[3] is not None]
        threads = compute_threads() if self.device.type == "cpu" else 1
        outputs = compute_each(self.teacher.embed_arrays, [row[3] for row in readable], threads)
        results = [{"clip": c, "key": k, "failure": f} for c, k, _, a, f in batch if a is None]
        for (clip, key, path, _, _), out in zip(readable, outputs, strict=True):
            try:
                target.write(key, out, what(target, SourceItem(clip, Path(path))))
                results.append({"clip": clip, "key": key, "failure": None})
            except SourceError as err:
                results.append({"clip": clip, "key": key, "failure": str(err)})
        with open(self.folder / RESULTS.format(self.global_rank), "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in results)


def extract_batched(
    teacher: Teacher, items: list[SourceItem], collection: Collection, settings: ExtractionSettings
) -> FillReport:
    """Embed every item (a clip's source file) that has no entry in ``collection`` (see the module docstring)."""
    report, todo = plan_fill(collection, items)
    if todo:
        for stale in collection.folder.glob(RESULTS.format("*")):
            stale.unlink()
        size = settings.batch_size
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        loader = DataLoader(
            PlannedBatches(batches, teacher),
            batch_size=1,
            collate_fn=_keep_list,
            num_workers=settings.workers,
            shuffle=False,
        )
        from eastmir.training.trainer import interrupts_as_keyboard, lightning_trainer, quiet_lightning

        quiet_lightning()
        trainer = lightning_trainer(
            "--accelerator / --devices / --strategy",
            accelerator=settings.accelerator,
            devices=settings.devices,
            strategy=settings.strategy,
            num_nodes=settings.num_nodes,
            logger=False,
            enable_progress_bar=settings.progress,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        with interrupts_as_keyboard(trainer):
            trainer.predict(Extraction(teacher, collection), dataloaders=loader, return_predictions=False)
        if (
            trainer.world_size > 1 and settings.strategy != "ddp_spawn"
        ):  # every rank runs on: wait, and let rank 0 report
            trainer.strategy.barrier()
            if not trainer.is_global_zero:
                return report
        _merge(collection, report)
    finish_fill(collection, report, settings.on_error)
    return report


def _merge(collection: Collection, report: FillReport) -> None:
    """Fold every rank's results into ``report`` (a batch a sampler repeated is counted once)."""
    seen: dict[str, dict[str, Any]] = {}
    for part in sorted(collection.folder.glob(RESULTS.format("*"))):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            seen[row["clip"]] = row
        part.unlink()
    for clip, row in seen.items():
        if row["failure"] is None:
            report.built += 1
            report.keys[clip] = row["key"]
        else:
            report.failed[clip] = row["failure"]


__all__ = ["Extraction", "PlannedBatches", "extract_batched"]
