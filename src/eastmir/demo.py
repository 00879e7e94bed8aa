"""``eastmir demo``: from nothing to a Table-1-style result on ``synth``.

Renders the dataset, extracts aiSFX embeddings, trains the requested systems
(default Baseline, TeacherLR, EAsT_Final; any config under ``configs/synth``
by name, systems they require, such as the TeacherLR head of KD, first), prints a Markdown table of their
test mAP / ROC-AUC / F1 and writes it (and a CSV) to ``{workdir}/runs``.
Every step is cached, so a second run only reprints.
"""

from __future__ import annotations

import time
from pathlib import Path

from eastmir.config import load_config, shipped_config_dir
from eastmir.reporting.tables import markdown_table, read_runs, write_csv
from eastmir.training.fit import fit

DEFAULT_SYSTEMS = ("baseline", "teacher_lr", "east_final")


def available_systems() -> list[str]:
    return sorted(p.stem for p in (shipped_config_dir() / "synth").glob("*.yaml") if p.stem != "base")


def run_demo(
    workdir: str | Path,
    systems: list[str] | tuple[str, ...] = DEFAULT_SYSTEMS,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> str:
    started = time.time()
    valid = available_systems()
    unknown = [s for s in systems if s not in valid]
    if unknown:
        raise SystemExit(f"unknown demo system(s) {unknown}; valid: {', '.join(valid)}")
    run_dirs, done = [], {}

    def run(name: str) -> Path:
        if name not in done:
            config = load_config(f"synth/{name}", overrides, workdir=workdir)
            for needed in config.get("requires", []):  # e.g. KD needs the TeacherLR head
                run(needed)
            print(f"\n=== {name} ===", flush=True)
            done[name] = fit(config, progress=progress)
        return done[name]

    for name in systems:
        run_dirs.append(run(name))
    rows = read_runs(run_dirs)
    table = markdown_table(rows)
    out = Path(workdir) / "runs"
    (out / "demo_results.md").write_text(
        "# eastmir demo: synth, Mobile FCN student, aiSFX teacher (test split)\n\n" + table + "\n"
    )
    write_csv(rows, out / "demo_results.csv")
    print("\n" + table)
    print(f"\nwritten to {out / 'demo_results.md'} and demo_results.csv; demo wall time {time.time() - started:.0f} s")
    return table
