"""``eastmir extract``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eastmir.cli.parsers import Parents, add_settings, workdir_path
from eastmir.config.arguments import cli_type
from eastmir.numbers import BatchSize, Count, Workers


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``extract`` command's arguments."""
    ext = sub.add_parser(
        "extract", parents=[parents.common, parents.workdir], help="store a teacher's embeddings for a dataset"
    )
    ext.add_argument(
        "--teacher", required=True, help="aisfx, musicnn, precomputed, … (`eastmir teachers`); a+b: an ensemble"
    )
    ext.add_argument("--dataset", required=True, help="a prepared dataset folder (holding manifest.json)")
    add_settings(ext, "teacher options, e.g. path=DIR dim=128 for precomputed")
    ext.add_argument("--cache-dir", help="the store (default: <workdir>/cache)")
    ext.add_argument("--weights-dir", help="folder with the teacher's weight file or wheel (offline use)")
    ext.add_argument("--batch-size", type=cli_type(BatchSize), default=8, help="clips per batch")
    ext.add_argument(
        "--workers", type=cli_type(Workers), default=0, help="loader processes decoding audio while the teacher runs"
    )
    ext.add_argument("--devices", default="1", help="devices (e.g. 2, or auto); with several, one rank per device")
    ext.add_argument("--accelerator", default="cpu", help="cpu, gpu, auto, …")
    ext.add_argument("--strategy", default="auto", help="e.g. ddp on several GPUs or nodes")
    ext.add_argument("--num-nodes", type=cli_type(Count), default=1)
    ext.add_argument("--on-error", choices=("raise", "skip"), default="raise")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import TeacherSection, parse_overrides, teacher_section

    section = teacher_section(args.teacher, parse_overrides(args.overrides))
    manifest = pipeline.load_dataset(args.dataset)
    store = pipeline.store_at(
        Path(args.cache_dir).absolute() if args.cache_dir else workdir_path(args.workdir) / "cache"
    )
    teacher = pipeline.build_teacher(section, weights_dir=args.weights_dir)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    collection, report = pipeline.extract(
        teacher,
        manifest,
        store,
        batch_size=args.batch_size,
        on_error=args.on_error,
        progress=not args.no_progress,
        workers=args.workers,
        devices=devices,
        strategy=args.strategy,
        accelerator=args.accelerator,
        num_nodes=args.num_nodes,
    )
    pipeline.record_requests(store, collection, TeacherSection.model_validate(section), teacher)
    period = f"frame period {teacher.frame_seconds:.3f} s" if teacher.frame_seconds else "one vector per clip"
    print(f"{teacher.label} (dim {teacher.dim}, {period}): {report.summary(collection)}")
