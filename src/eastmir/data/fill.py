"""Filling the store: the one build loop every stored array goes through.

``features`` (log-mels, waveforms), every teacher's extraction and the
``precomputed`` import fill a :class:`~eastmir.data.store.Collection` the
same way:

1. **plan** (:func:`plan_fill`): each clip's source key; what is stored
   already is skipped (so a build resumes), a missing source is recorded;
2. **compute one entry alone** (:func:`compute_each`): every entry by its
   own call on one intra-op thread, so its bytes depend on its source alone,
   never on the batch, the clips beside it, the processes or the threads;
3. **write** each entry checked and atomically (:meth:`Collection.write`);
4. **record failures** (:func:`finish_fill`): ``failures.json`` beside the
   entries, then stop naming them or, with ``on_error="skip"``, leave them out.

:func:`fill` runs the four here (or in worker processes); the batched,
multi-device teacher job (:mod:`eastmir.training.extraction`) runs steps 2
and 3 in a Lightning prediction loop between :func:`plan_fill` and
:func:`finish_fill`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from eastmir.audio import AudioDecodeError
from eastmir.data.sources import SourceIndex
from eastmir.data.store import Collection, source_key
from eastmir.errors import SourceError, StoreError
from eastmir.fetch import atomic_write, remove_stale_parts

ON_ERROR = ("raise", "skip")


@dataclass
class SourceItem:
    """One clip to store: its id (for messages), the file its entry is made from, and the manifest's record of
    that file's content (``{"sha256", "stat"}``; ``None`` when it has none)."""

    clip_id: str
    path: Path
    known: dict | None = None


@dataclass
class FillReport:
    """What :func:`fill` did: entries ``built`` now, ``cached`` before, ``failed`` (clip id → reason)."""

    built: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # clip id → source key, for every usable clip

    def summary(self, collection: Collection) -> str:
        """``"12 stored now, 84 already stored, 1 left out (see …/failures.json); store: …"``."""
        left = f", {len(self.failed)} left out (see {collection.failures_file})" if self.failed else ""
        return f"{self.built} stored now, {self.cached} already stored{left}; store: {collection.folder}"


class Filled(NamedTuple):
    """What a stage left in the store: the collection it filled and what that fill did (unpacks as a pair)."""

    collection: Collection
    report: FillReport


def fill(
    collection: Collection,
    items: Sequence[SourceItem],
    read: Callable[[Path], np.ndarray],
    compute: Callable[[list[np.ndarray]], list[np.ndarray]],
    batch_size: int = 1,
    on_error: str = "raise",
    progress: bool = True,
    desc: str = "store",
    workers: int = 0,
    verify: bool = False,
) -> FillReport:
    """Make the entry of every item that has none; resumable and safe to interrupt.

    Each source is ``read`` (decoded audio, a user's embedding file) and
    ``compute``d alone on one intra-op thread (:func:`compute_each`; up to
    ``batch_size`` or the torch thread count are read, then computed in
    parallel); each result is validated and written atomically.
    With ``workers`` > 0 (and ``batch_size`` 1) the items are built in that
    many worker processes (``read`` and ``compute`` must then be picklable).
    ``verify`` re-reads every existing entry and rebuilds a corrupted one.
    A source that cannot be used (missing, undecodable, wrong shape,
    non-finite) is recorded with its reason in ``failures.json``; then with
    ``on_error="raise"`` a :class:`StoreError` names every one of them (the
    good entries are kept, so a rerun does only what is left), with
    ``"skip"`` they are reported and left out.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if not verify:  # a complete collection is only read: no lock, nothing written (a read-only store; many runs)
        report, todo = plan_fill(collection, items)
        if not todo:
            finish_fill(collection, report, on_error)
            return report
    with collection.building():
        return _fill(collection, items, read, compute, batch_size, on_error, progress, desc, workers, verify)


def _fill(collection, items, read, compute, batch_size, on_error, progress, desc, workers, verify) -> FillReport:
    report, todo = plan_fill(collection, items, verify)
    with tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress or not todo) as bar:
        if workers > 0 and batch_size == 1 and len(todo) > 1:
            _fill_in_workers(collection, todo, read, compute, workers, report, bar)
        else:
            _fill_here(collection, todo, read, compute, batch_size, report, bar)
    finish_fill(collection, report, on_error)
    return report


def plan_fill(
    collection: Collection, items: Sequence[SourceItem], verify: bool = False
) -> tuple[FillReport, list[tuple[SourceItem, str]]]:
    """What :func:`fill` has to do: the report so far (cached entries, missing sources) and the ``(item, key)``
    pairs still to build. Other executors (batched teacher extraction, DDP) start here too."""
    remove_stale_parts(collection.folder)
    report = FillReport()
    todo: list[tuple[SourceItem, str]] = []
    index = SourceIndex(collection.folder.parents[1])
    for item in items:
        try:
            key = source_key(item.path, item.known, index)
        except FileNotFoundError:
            report.failed[item.clip_id] = f"{item.path}: file not found"
            continue
        except IsADirectoryError:
            report.failed[item.clip_id] = f"{item.path}: a folder, not a file"
            continue
        if collection.has(key) and not (verify and _corrupted_entry(collection, key)):
            report.cached += 1
            report.keys[item.clip_id] = key
        else:
            todo.append((item, key))
    index.close()
    return report, todo


def finish_fill(collection: Collection, report: FillReport, on_error: str) -> None:
    """Write ``failures.json`` and raise or report, as :func:`fill` does at its end."""
    _record_failures(collection, report, on_error)


def _corrupted_entry(collection: Collection, key: str) -> bool:
    try:
        collection.read(key)
    except StoreError as err:
        print(f"warning: {err}: rebuilding it")
        collection.entry(key).unlink(missing_ok=True)
        return True
    return False


def compute_each(
    compute: Callable[[list[np.ndarray]], list[np.ndarray]], arrays: Sequence[np.ndarray], threads: int = 1
) -> list[np.ndarray]:
    """``[compute([a])[0] for a in arrays]``, each call on one intra-op thread, ``threads`` calls at a time.

    This is what makes an entry's bytes independent of how clips were batched
    and where they ran: every clip goes through the same shapes on one
    thread, whatever the batch, its neighbours, the process count or the
    machine's thread setting (see the module docstring). The process's torch
    thread count is restored afterwards.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(array: np.ndarray) -> np.ndarray:
        torch.set_num_threads(1)  # this thread's own OpenMP setting, which a new thread does not inherit
        with torch.no_grad():
            return compute([array])[0]

    try:
        if threads <= 1 or len(arrays) <= 1:
            return [one(array) for array in arrays]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(threads, len(arrays))) as pool:
            return list(pool.map(one, arrays))
    finally:
        torch.set_num_threads(before)


def compute_threads() -> int:
    """How many clips :func:`compute_each` computes at once in this process: its torch thread count."""
    import torch

    return torch.get_num_threads()


def _fill_here(collection, todo, read, compute, batch_size, report, bar) -> None:
    threads = compute_threads()
    pending: list[tuple[SourceItem, str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        outputs = compute_each(compute, [array for _, _, array in pending], threads)
        for (item, key, _), out in zip(pending, outputs, strict=True):
            try:
                collection.write(key, out, what(collection, item))
            except SourceError as err:
                report.failed[item.clip_id] = str(err)
                continue
            report.built += 1
            report.keys[item.clip_id] = key
        bar.update(len(pending))
        pending.clear()

    for item, key in todo:
        try:
            array = read(item.path)
        except (AudioDecodeError, SourceError) as err:
            report.failed[item.clip_id] = str(err)
            bar.update(1)
            continue
        if len(pending) >= max(batch_size, threads):
            flush()
        pending.append((item, key, array))
    flush()


def what(collection: Collection, item: SourceItem) -> str:
    return f"{item.path} ({collection.producer.name} output for clip {item.clip_id})"


def _build_one(collection: Collection, item: SourceItem, key: str, read, compute) -> str | None:
    """Build one entry (in a worker process); returns why it failed, or ``None``."""
    try:
        collection.write(key, compute_each(compute, [read(item.path)])[0], what(collection, item))
    except (AudioDecodeError, SourceError) as err:
        return str(err)
    return None


def _worker_start() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already


def _fill_in_workers(collection, todo, read, compute, workers, report, bar) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start) as pool:
        futures = {pool.submit(_build_one, collection, item, key, read, compute): (item, key) for item, key in todo}
        for future in as_completed(futures):
            item, key = futures[future]
            failure = future.result()
            if failure is None:
                report.built += 1
                report.keys[item.clip_id] = key
            else:
                report.failed[item.clip_id] = failure
            bar.update(1)


def _record_failures(collection: Collection, report: FillReport, on_error: str) -> None:
    path = collection.failures_file
    if not report.failed:
        if path.exists():  # (a read-only store refuses even the removal of a file that is not there)
            path.unlink()
        return
    text = json.dumps(report.failed, indent=1)
    if not (path.is_file() and path.read_text() == text):  # (a read-only store holding the same list is fine)
        atomic_write(path, text)
    first = "; ".join(f"{clip}: {why}" for clip, why in list(report.failed.items())[:3])
    more = f" (and {len(report.failed) - 3} more)" if len(report.failed) > 3 else ""
    if on_error == "raise":
        raise StoreError(
            f"{len(report.failed)} clip(s) could not be used, listed in {path}: {first}{more}; "
            "fix or remove them, or rerun with --on-error skip (data.on_error: skip) to leave them out"
        )
    print(f"warning: left out {len(report.failed)} clip(s) that could not be used; see {path}")
