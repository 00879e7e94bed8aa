"""How sure a comparison of seeds is: a 95 % interval of the mean paired difference, a verdict read from it,
and how many seeds a difference of that size needs.

The interval is Student's t over the paired differences (one per seed:
system minus Baseline of the same seed), ``mean ± t(0.975, n − 1) · sd / √n``,
the interval ``scipy.stats.ttest_rel`` reports. Chosen over a bootstrap over
seeds because studies here have 3 to 10 seeds: 3 seeds give 10 distinct
bootstrap resamples, and a bootstrap interval from so few is too narrow
(it ignores that the spread itself is estimated from three numbers), where
the t interval is exact when the differences are normal and widens as it
should for small ``n``. With one seed there is no spread, so no interval.

The verdict is the interval's: ``above`` when it lies above 0, ``below``
when under, else ``not distinguishable``. The power line answers "how many
seeds would show a difference this large, at this spread, 80 % of the time
(two-sided, α = 0.05)": the smallest ``n`` whose paired t test has that power
against the observed mean difference, from the noncentral t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95
POWER = 0.80
MOST_SEEDS = 10_000  # the power line says "more than this" beyond it


@dataclass(frozen=True)
class Interval:
    """The mean paired difference of ``n`` seeds with its ``LEVEL`` interval (``None`` with one seed)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def verdict(self) -> str:
        if self.low is None or self.high is None:
            return "one seed: no interval"
        if self.low > 0:
            return "above"
        if self.high < 0:
            return "below"
        return "not distinguishable"


def paired_interval(differences: Sequence[float], level: float = LEVEL) -> Interval:
    """Student's t interval of the mean of ``differences`` (module docstring)."""
    from scipy import stats

    n = len(differences)
    if n == 0:
        raise ValueError("no paired difference to summarise")
    mean = sum(differences) / n
    if n == 1:
        return Interval(mean, None, None, 1)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def seeds_needed(mean: float, sd: float, power: float = POWER, alpha: float = 1 - LEVEL) -> int | None:
    """The fewest seeds for a two-sided paired t test at ``alpha`` to detect a mean difference ``mean`` with
    standard deviation ``sd`` with probability ``power``; ``None`` when there is no difference to detect (and
    :data:`MOST_SEEDS` + 1 beyond that many)."""
    from scipy import stats

    if mean == 0:
        return None
    if sd == 0:
        return 2
    effect = abs(mean) / sd

    def enough(n: int) -> bool:  # the power of the test with n seeds, which grows with n
        critical = stats.t.ppf(1 - alpha / 2, n - 1)
        shift = effect * math.sqrt(n)
        return stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift) >= power

    high = 2
    while not enough(high):
        if high > MOST_SEEDS:
            return MOST_SEEDS + 1
        high *= 2
    low = max(2, high // 2)  # enough(high); below low it was not (or low is 2)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return high


def power_words(differences: Sequence[float]) -> str:
    """``"5 seeds"`` (to see a difference of this size at this spread), or why it cannot be said."""
    n = len(differences)
    if n < 2:
        return "—"
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    needed = seeds_needed(mean, sd)
    if needed is None:
        return "no difference to see"
    return f"more than {MOST_SEEDS}" if needed > MOST_SEEDS else f"{needed}"
