"""``eastmir fit``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
import os

from eastmir.cli.parsers import Parents, workdir_path


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``fit`` command's arguments."""
    fit = sub.add_parser(
        "fit", parents=[parents.common, parents.workdir, parents.config, parents.sets], help="train and test one run"
    )
    fit.add_argument("--overwrite", action="store_true", help="train again from the start")


def run(args: argparse.Namespace) -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    config = load_config(args.config, args.overrides, workdir=workdir_path(args.workdir))
    run_dir = pipeline.fit(config, progress=not args.no_progress, overwrite=args.overwrite)
    if all(os.environ.get(rank, "0") == "0" for rank in ("LOCAL_RANK", "NODE_RANK")):  # once, not per DDP process
        from eastmir.rundir import RunDirectory

        run = RunDirectory(run_dir)
        if run.finished:
            metrics = run.read_metrics()
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items())
            print(f"{metrics['system']} ({metrics['name']}), test split: {shown}")
            if metrics.get("data_wait") is not None:
                print(
                    f"data wait: the accelerator waited for batches {metrics['data_wait']:.1%} of the training "
                    "steps' time (more data.num_workers if this is high)"
                )
        print(f"run directory: {run_dir}")
