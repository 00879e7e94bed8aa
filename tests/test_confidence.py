"""The reports' intervals, verdicts and power lines, against scipy.stats and published sample sizes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from eastmir.reporting.confidence import paired_interval, power_words, seeds_needed


@pytest.mark.parametrize(
    ("system", "baseline"),
    [
        ([0.52, 0.61, 0.43], [0.50, 0.60, 0.40]),  # three seeds, all above
        ([0.71, 0.69, 0.75, 0.70, 0.72], [0.70, 0.71, 0.70, 0.72, 0.69]),  # five, mixed
        ([0.40, 0.38], [0.45, 0.44]),  # two, both below
        (list(np.linspace(0.5, 0.6, 10)), list(np.linspace(0.5, 0.6, 10) - 0.01 + 0.004 * np.sin(np.arange(10)))),
    ],
)
def test_the_interval_is_scipys_paired_t_interval(system, baseline):
    differences = [a - b for a, b in zip(system, baseline)]
    ours = paired_interval(differences)
    theirs = stats.ttest_rel(system, baseline).confidence_interval(0.95)
    assert ours.mean == pytest.approx(np.mean(differences))
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_the_verdict_is_read_from_the_interval():
    assert paired_interval([0.02, 0.01, 0.03]).verdict == "not distinguishable"  # 3 of 3 above, t(2) is wide
    assert paired_interval([0.02, 0.015, 0.025, 0.02, 0.018]).verdict == "above"
    assert paired_interval([-0.05, -0.04, -0.06]).verdict == "below"
    one = paired_interval([0.3])
    assert (one.low, one.high, one.verdict) == (None, None, "one seed: no interval")


def test_seeds_needed_are_the_published_sample_sizes_of_the_paired_t_test():
    """Two-sided, α 0.05, power 0.8 (Cohen's tables; G*Power): effect size 1 → 10, 0.5 → 34, 0.2 → 199."""
    assert seeds_needed(1.0, 1.0) == 10 and seeds_needed(0.005, 0.01) == 34 and seeds_needed(0.2, 1.0) == 199
    assert seeds_needed(-0.5, 1.0) == 34  # the sign does not matter
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.01, 0.0) == 2
    # and it is the smallest n: one seed fewer falls short of 80 % power (checked by simulation)
    rng = np.random.default_rng(0)
    draws = rng.normal(0.5, 1.0, size=(20000, 33))
    t = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(33))
    assert np.mean(np.abs(t) > stats.t.ppf(0.975, 32)) < 0.8
    assert power_words([0.02, 0.01, 0.03]) == "5" and power_words([0.1]) == "—"
