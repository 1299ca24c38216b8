"""Seed statistics (verify/stats.py) and the interval decisions (verify/registry.py) on hand-computed numbers."""

import math

import pytest
from scipy import stats

from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Estimate, decide_both, decide_positive
from verify.stats import binned_difference, over_seeds, slope_log2


def test_over_seeds_hand_computed():
    e = over_seeds([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sample SD of 1, 2, 3 is 1
    assert (e.mean, e.low, e.high) == pytest.approx((2.0, 2.0 - half, 2.0 + half)) and e.per_seed == [1.0, 2.0, 3.0]
    assert e.text(".2f") == f"2.00 [{2 - half:.2f}, {2 + half:.2f}]"


def test_over_seeds_drops_missing_values_and_handles_few():
    assert over_seeds([1.0, float("nan"), None, 3.0]).per_seed == [1.0, 3.0]
    one = over_seeds([0.5])
    assert (one.mean, one.low, one.high) == (0.5, 0.5, 0.5) and one.text() == "0.5"
    empty = over_seeds([])
    assert math.isnan(empty.mean) and empty.per_seed == []


def test_interval_decisions():
    above, below, across = Estimate(1, 0.5, 1.5, [1, 1]), Estimate(-1, -1.5, -0.5, [-1, -1]), Estimate(0, -1, 1, [0, 0])
    assert [decide_positive(e) for e in (above, below, across)] == [REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE]
    assert decide_positive(above, null=2.0) == NOT_REPRODUCED
    assert decide_both(above, above) == REPRODUCED and decide_both(below, below) == NOT_REPRODUCED
    assert decide_both(above, below) == INCONCLUSIVE and decide_both(above, across) == INCONCLUSIVE


def test_slope_per_doubling():
    e = slope_log2([16, 32, 64, 128], [0.1, 0.2, 0.3, 0.4])
    assert e.mean == pytest.approx(0.1) and e.bounds() == pytest.approx((0.1, 0.1)) and e.df == 2 and e.n == 4
    res = stats.linregress([4, 5, 6, 7, 4, 5], [0.1, 0.25, 0.3, 0.4, 0.15, 0.2])
    e = slope_log2([16, 32, 64, 128, 16, 32], [0.1, 0.25, 0.3, 0.4, 0.15, 0.2])
    assert (e.mean, e.se, e.df) == pytest.approx((res.slope, res.stderr, 4))
    assert math.isnan(slope_log2([16, 32], [0.1, 0.2]).mean)  # fewer than 3 points: no interval


def test_binned_difference_hand_computed():
    x = [1.0, 1.1, 100.0, 110.0]
    bins = binned_difference(x, [0.5, 0.7, 0.1, 0.1], x, [0.2, 0.2, 0.0, 0.2], width=0.5)
    assert [(b.lo, b.n_rl, b.n_sft) for b in bins] == [(0.0, 2, 2), (2.0, 2, 2)]
    assert [b.diff for b in bins] == pytest.approx([0.6 - 0.2, 0.1 - 0.1])
    assert [b.variance for b in bins] == pytest.approx([0.02 / 2 + 0.0, 0.0 + 0.02 / 2])  # Welch: var / n per method
    assert binned_difference([1.0], [0.1], [100.0], [0.2], width=0.5) == []
