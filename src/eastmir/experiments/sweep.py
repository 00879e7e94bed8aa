"""``eastmir sweep``: a grid of runs, selected on validation as the papers do.

``--grid distillation.lambda=0.1,0.3,0.6 seed=0,1,2`` expands to every
combination; each is one run named ``<config name>-<key><value>…`` (e.g.
``east_final-lambda0.3-seed1``) in the work directory, so a finished run is
skipped and an interrupted one resumes. The **setting** (everything but
``seed``) with the highest mean best-validation score over its seeds is
chosen; its test figures are reported as mean ± std over seeds (sample
standard deviation; 0 for one seed). The test split never takes part in the
choice.

Runs go one after another by default. ``--engine ray`` hands them to Ray
Tune (``pip install 'eastmir[ray]'``), which spreads them over the CPUs and
GPUs of a local machine or a Ray cluster; nothing else is scheduled here.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eastmir.config import RunConfig, load_config
from eastmir.errors import ConfigError
from eastmir.experiments.parallel import Job, run_jobs
from eastmir.fetch import atomic_write
from eastmir.reporting.confidence import paired_interval
from eastmir.reporting.grid import mean_std
from eastmir.reporting.paired import interval_words
from eastmir.rundir import RunDirectory

SEED = "seed"


def _split_values(text: str) -> list[str]:
    """``"0.1,0.3,[1,2]"`` → ``["0.1", "0.3", "[1,2]"]``: commas inside brackets or braces do not split."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["distillation.lambda=0.1,0.3", "seed=0,1"]`` → ``{"distillation.lambda": [0.1, 0.3], "seed": [0, 1]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item!r}: write KEY=V1,V2,… (e.g. distillation.lambda=0.1,0.3 seed=0,1,2)")
        if key.strip() in grid:
            raise ConfigError(f"--grid {key.strip()} is given twice")
        try:
            parsed = [yaml.safe_load(v) for v in _split_values(values)]
        except yaml.YAMLError as err:
            raise ConfigError(f"--grid {item!r}: a value is not valid YAML ({' '.join(str(err).split())})") from None
        twice = sorted({json.dumps(v) for v in parsed if sum(json.dumps(w) == json.dumps(v) for w in parsed) > 1})
        if twice:
            raise ConfigError(
                f"--grid {item!r}: {', '.join(twice)} given more than once (the same run twice); give each value once"
            )
        grid[key.strip()] = parsed
    return grid


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order the keys were given."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", text).strip("_")


def point_name(base: str, point: dict[str, Any]) -> str:
    """``east_final`` + ``{"distillation.lambda": 0.3, "seed": 1}`` → ``east_final-lambda0.3-seed1``."""
    return "-".join([base, *(f"{key.rsplit('.', 1)[-1]}{_slug(value)}" for key, value in point.items())])


def overrides_of(point: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


@dataclass
class SweepRun:
    point: dict[str, Any]
    run_dir: Path
    metrics: dict[str, Any]

    @property
    def setting(self) -> tuple:
        return tuple((k, json.dumps(v)) for k, v in self.point.items() if k != SEED)

    @property
    def validation(self) -> float:
        """The best validation score of the run (``best_val_mAP``, or accuracy for single-label tasks)."""
        for key, value in self.metrics.items():
            if key.startswith("best_val_") and value is not None:
                return float(value)
        raise ConfigError(f"{self.run_dir}/metrics.json has no best validation score")


@dataclass
class Setting:
    """One setting of the grid over its seeds."""

    values: dict[str, Any]
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def validation(self) -> tuple[float, float]:
        return mean_std([r.validation for r in self.runs])

    def test(self) -> dict[str, tuple[float, float]]:
        metrics = sorted({k for r in self.runs for k in r.metrics["test"]})
        return {m: mean_std([r.metrics["test"][m] for r in self.runs if m in r.metrics["test"]]) for m in metrics}


def select(runs: Sequence[SweepRun]) -> tuple[Setting, list[Setting]]:
    """The setting with the highest mean best-validation score over its seeds, and every setting."""
    settings: dict[tuple, Setting] = {}
    for run in runs:
        values = {k: v for k, v in run.point.items() if k != SEED}
        settings.setdefault(run.setting, Setting(values)).runs.append(run)
    ordered = list(settings.values())
    best = max(ordered, key=lambda s: s.validation[0])
    return best, ordered


def against_chosen(setting: Setting, best: Setting) -> str:
    """The setting's best validation score minus the chosen setting's, seed by seed: the mean with its 95 %
    interval and the verdict (:mod:`eastmir.reporting.confidence`); ``—`` for the chosen one."""
    if setting is best:
        return "—"
    chosen = {r.point.get(SEED): r.validation for r in best.runs}
    differences = [r.validation - chosen[r.point.get(SEED)] for r in setting.runs if r.point.get(SEED) in chosen]
    if not differences:
        return "no common seed"
    interval = paired_interval(differences)
    return f"{interval_words(interval)}: {interval.verdict}"


def summary_table(best: Setting, settings: list[Setting]) -> str:
    """Markdown: one row per setting (validation mean ± std, its paired difference to the chosen setting with a
    95 % interval and verdict, test mean ± std, seeds), the chosen one marked."""
    metrics = sorted({m for s in settings for m in s.test()})
    head = ["setting", "seeds", "val (best) mean ± std", "Δ val vs chosen [95 % CI]", *(f"test {m}" for m in metrics)]
    lines = [
        "| " + " | ".join([*head, "chosen"]) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", *["---:"] * len(metrics), ":-:"]) + "|",
    ]
    for s in settings:
        label = ", ".join(f"{k}={v}" for k, v in s.values.items()) or "(one setting)"
        val = "{:.3f} ± {:.3f}".format(*s.validation)
        tests = ["{:.3f} ± {:.3f}".format(*s.test()[m]) if m in s.test() else "—" for m in metrics]
        cells = [label, str(len(s.runs)), val, against_chosen(s, best), *tests, "✓" if s is best else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_in_processes(
    jobs: list[tuple[str, dict[str, Any], RunConfig]], n_jobs: int, progress: bool = True
) -> list[Path]:
    """Fit every ``(name, point, config)``, ``n_jobs`` at a time (:mod:`eastmir.experiments.parallel`)."""
    done = run_jobs([Job(config) for _, _, config in jobs], n_jobs, progress)
    return [done[config.name] for _, _, config in jobs]


def sweep(
    source: str | Path,
    grid: dict[str, list[Any]],
    workdir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
    engine: str = "sequential",
    name: str | None = None,
    n_jobs: int = 1,
) -> tuple[Setting, list[Setting], Path]:
    """Run (or resume) the grid and choose on validation; returns the chosen setting, all settings and the
    folder holding ``sweep.json`` and ``sweep.md``."""
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,…")
    points = expand(grid)
    base = name or load_config(source, list(overrides), workdir=workdir).name
    jobs = []
    for point in points:
        run_name = point_name(base, point)
        config = load_config(source, [*overrides, *overrides_of(point), f"name={run_name}"], workdir=workdir)
        jobs.append((run_name, point, config))
    if engine == "ray":
        from eastmir.experiments.ray_engine import run_with_ray

        run_dirs = run_with_ray(jobs)
    elif engine == "sequential":
        run_dirs = run_in_processes(jobs, n_jobs, progress)
    else:
        raise ConfigError(f"--engine {engine!r}: sequential or ray")
    runs = [SweepRun(point, d, RunDirectory(d).read_metrics()) for (_, point, _), d in zip(jobs, run_dirs)]
    best, settings = select(runs)
    out = Path(workdir) / "sweeps" / base
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(best, settings)
    atomic_write(out / "sweep.md", f"# sweep of {source}\n\n{table}\n")
    blob = {
        "source": str(source),
        "grid": grid,
        "chosen": best.values,
        "chosen_validation": best.validation,
        "chosen_test": best.test(),
        "runs": [{"point": r.point, "run_dir": str(r.run_dir)} for r in runs],
    }
    atomic_write(out / "sweep.json", json.dumps(blob, indent=1))
    return best, settings, out
