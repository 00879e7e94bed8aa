"""Paired differences against the Baseline: each seed's run of a system minus the Baseline run of the same
seed and data fraction.

A seed fixes a run's training subset, shuffle, initialisation and random
draws (``eastmir experiment limited-data``), so a system and the Baseline of
one seed share that seed's luck, and their difference is a cleaner measure
than two means whose spreads overlap. :func:`paired_differences` pairs the
runs; :func:`paired_markdown` lays them out, one row per system, teacher and
data fraction: the mean difference with its 95 % interval, each seed's, on
how many seeds the system is above the Baseline, the verdict the interval
gives and how many seeds a difference of that size needs
(:mod:`eastmir.reporting.confidence`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from eastmir.reporting.confidence import Interval, paired_interval, power_words
from eastmir.reporting.grid import NO_TEACHER, TITLES, RunRecord, mean_std

BASELINE = "Baseline"


@dataclass
class Paired:
    """One system × teacher × data fraction: ``differences`` maps a seed to the system's metric minus the
    Baseline's on that seed."""

    system: str
    teacher: str
    fraction: float
    differences: dict[int, float] = field(default_factory=dict)

    @property
    def above(self) -> int:
        """On how many seeds the system scored above the Baseline."""
        return sum(d > 0 for d in self.differences.values())

    @property
    def mean_std(self) -> tuple[float, float]:
        return mean_std(list(self.differences.values()))

    @property
    def interval(self) -> Interval:
        """The mean difference with its 95 % t interval and verdict (:mod:`eastmir.reporting.confidence`)."""
        return paired_interval(list(self.differences.values()))

    @property
    def seeds_for_power(self) -> str:
        """How many seeds show a difference of this size at this spread 80 % of the time."""
        return power_words(list(self.differences.values()))


def paired_differences(rows: Sequence[RunRecord], metric: str = "mAP") -> list[Paired]:
    """Every system with a teacher (TeacherLR too) against the Baseline (the system named ``Baseline``, else
    the only system without a teacher), seed by seed; a seed without a Baseline run is left out. Empty when
    there is no Baseline."""
    plain = {r.base_system or r.system for r in rows if r.teacher == NO_TEACHER}
    baseline = BASELINE if BASELINE in plain else next(iter(plain)) if len(plain) == 1 else None
    if baseline is None:
        return []

    def is_baseline(r: RunRecord) -> bool:
        return (r.base_system or r.system) == baseline and r.teacher == NO_TEACHER

    reference = {(r.fraction, r.seed, r.variant): r.test[metric] for r in rows if is_baseline(r)}
    variants = {(r.fraction, r.variant) for r in rows if is_baseline(r)}
    out: dict[tuple, Paired] = {}
    for r in rows:
        if is_baseline(r):
            continue
        # the Baseline run of the same seed, data and settings; a Baseline of one setting pairs with every run
        only = [v for f, v in variants if f == r.fraction]
        base = reference.get(
            (r.fraction, r.seed, r.variant if r.variant in only else only[0] if len(only) == 1 else None)
        )
        value = r.test.get(metric)
        if base is None or value is None or math.isnan(value) or math.isnan(base):
            continue
        key = (r.system, r.teacher, r.fraction)
        out.setdefault(key, Paired(*key)).differences[r.seed] = value - base
    return list(out.values())


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def interval_words(interval: Interval) -> str:
    """``+0.012 [−0.004, +0.028]``, or the mean alone with one seed."""
    if interval.low is None or interval.high is None:
        return f"{_signed(interval.mean)} (one seed: no interval)"
    return f"{_signed(interval.mean)} [{_signed(interval.low)}, {_signed(interval.high)}]"


def paired_markdown(pairs: Sequence[Paired], metric: str = "mAP") -> str:
    """One row per system, teacher and data fraction: the mean difference with its 95 % interval (Student's t
    over the seeds' paired differences), each seed's difference, the sign count, the verdict the interval gives
    and the seeds a difference of this size needs (80 % power at this spread)."""
    title = TITLES.get(metric, metric)
    lines = [
        f"| system | teacher | data | seeds | Δ test {title} vs Baseline [95 % CI] | per seed | above Baseline "
        "| verdict | seeds for 80 % power |",
        "|---|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for p in sorted(pairs, key=lambda p: (-p.fraction, p.teacher, p.system)):
        n = len(p.differences)
        interval = p.interval
        seeds = ", ".join(f"{s}: {_signed(d)}" for s, d in sorted(p.differences.items()))
        lines.append(
            f"| {p.system} | {p.teacher} | {p.fraction:.0%} | {n} | {interval_words(interval)} | {seeds} "
            f"| {p.above} of {n} | {interval.verdict} | {p.seeds_for_power} |"
        )
    lines.append("")
    lines.append(
        "95 % CI: Student's t over the paired differences (system minus Baseline, seed by seed); verdict: above or "
        "below when the interval excludes 0. Seeds for 80 % power: how many seeds a two-sided paired t test "
        "(α = 0.05) needs to show a difference of the observed size at the observed spread."
    )
    return "\n".join(lines)
