"""``eastmir report``: its arguments (:func:`add`) and what it runs (:func:`run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eastmir.cli.parsers import Parents
from eastmir.outputs import Outputs


def add(sub: argparse._SubParsersAction, parents: Parents) -> None:
    """The ``report`` command's arguments."""
    rep = sub.add_parser(
        "report",
        parents=[parents.common, parents.overwrite],
        help="Markdown/CSV table of runs (unfinished ones marked)",
    )
    rep.add_argument("runs", nargs="+", help="run directories (or folders holding them, e.g. WORKDIR/runs)")
    rep.add_argument("--csv", help="also write the per-run CSV here")
    rep.add_argument("--out", help="write the full report here: Markdown, CSV, LaTeX, figures, one HTML page")
    rep.add_argument("--title", default="eastmir report")


def run(args: argparse.Namespace) -> None:
    from eastmir.reporting.tables import markdown_table, read_runs, write_csv

    runs = _run_dirs(args.runs)
    outputs = Outputs(args.overwrite).with_inputs(runs)
    csv_path = outputs.check(args.csv, "--csv") if args.csv else None
    out = outputs.check_folder(args.out) if args.out else None
    rows = read_runs(runs)
    print(markdown_table(rows))
    if csv_path:
        write_csv(rows, csv_path, outputs)
    if out:
        from eastmir.reporting.report import write_report

        written = write_report(runs, out, args.title, outputs)
        print(f"\nreport written to {written['html']} (and report.md, report.csv, report.tex, figures/)")


def _run_dirs(arguments: list[str]) -> list[Path]:
    """Run directories as given, or the run directories inside a folder (e.g. ``WORKDIR/runs``)."""
    from eastmir.errors import RunError
    from eastmir.paths import path_kind
    from eastmir.rundir import CONFIG_FILE, RunDirectory

    for given in arguments:
        kind = path_kind(given)
        if kind not in (None, "a folder"):
            raise RunError(f"{given}: {'no such run directory or folder' if kind == 'missing' else kind}")
    runs = [run.path for run in RunDirectory.found_in(arguments)]
    if not any((run / CONFIG_FILE).is_file() for run in runs):
        raise RunError(
            f"no run directory in {', '.join(arguments)} (a run directory holds config.yaml; `eastmir fit` writes "
            "them under WORKDIR/runs)"
        )
    return runs
