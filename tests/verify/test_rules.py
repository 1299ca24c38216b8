"""verify.rules on hand-made numbers: every outcome of the floor and margin rules, the qualifiers, the
smallest detectable effect against statsmodels' power solver, two one-sided tests against statsmodels' TOST,
random-effects pooling of bins that disagree, and the one place that turns a verdict into CONTROL FAILED."""

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

from verify.rules import (
    AT_THE_EDGE,
    CONTROL_FAILED,
    FAIL,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PASS,
    REPRODUCED,
    UNDERPOWERED,
    AtLeast,
    ControlResult,
    Interval,
    Within,
    all_of,
    apply_controls,
    check,
)

FLOOR = AtLeast("RL - SFT sparsity", 0.1, "paper: hand-made")


def test_interval_of_matches_student_t():
    iv = Interval.of([1.0, 2.0, 3.0, None, float("nan")])
    assert iv.n == 3 and iv.mean == 2.0 and iv.df == 2
    lo, hi = iv.bounds(0.95)
    assert (lo, hi) == pytest.approx(DescrStatsW(np.array([1.0, 2.0, 3.0])).tconfint_mean(0.05))
    assert Interval.of([0.5]).bounds() == (0.5, 0.5)
    assert math.isnan(Interval.of([]).mean) and math.isnan(Interval.of([]).detectable())


def test_detectable_effect_matches_statsmodels_power():
    values = [0.1, 0.3, 0.2, 0.25, 0.15]
    iv = Interval.of(values)
    d = TTestPower().solve_power(nobs=5, alpha=0.05, power=0.8)  # in units of the standard deviation
    assert iv.detectable() == pytest.approx(d * np.std(values, ddof=1), rel=0.02)


def test_floor_rule_reaches_every_outcome():
    assert FLOOR.decide(Interval.of([0.30, 0.32, 0.31, 0.29, 0.33])).status == REPRODUCED
    # clearly above 0 but below the floor: an effect too small to count is NOT REPRODUCED, not support
    below = FLOOR.decide(Interval.of([0.02, 0.03, 0.025, 0.02, 0.03]))
    assert below.status == NOT_REPRODUCED and below.interval.bounds()[0] > 0
    edge = FLOOR.decide(Interval.of([0.09, 0.11, 0.10, 0.105, 0.095]))
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers and UNDERPOWERED not in edge.qualifiers
    wide = FLOOR.decide(Interval.of([-0.5, 0.6, 0.2]))
    assert wide.status == INCONCLUSIVE and UNDERPOWERED in wide.qualifiers
    assert wide.cell.startswith("INCONCLUSIVE (")
    empty = FLOOR.decide(Interval.of([]))
    assert empty.status == INCONCLUSIVE and empty.qualifiers == ("no data",)


def test_floor_rule_direction_below():
    rule = AtLeast("principal overlap excess", -0.01, "a priori", direction=-1)
    assert rule.decide(Interval.of([-0.05, -0.04, -0.06])).status == REPRODUCED
    assert rule.decide(Interval.of([0.02, 0.03, 0.025])).status == NOT_REPRODUCED
    assert rule.decide(Interval.of([-0.011, -0.009, -0.010, -0.0105])).status == INCONCLUSIVE


def test_equivalence_rule_matches_tost_and_reaches_every_outcome():
    rule = Within("random-base deficit", 0.02, "a priori")
    values = np.array([0.003, -0.004, 0.001, 0.002, -0.001])
    out = rule.decide(Interval.of(values))
    assert out.status == REPRODUCED
    p_tost = DescrStatsW(values).ttost_mean(-0.02, 0.02)[0]
    assert p_tost < 0.05
    # a mean of 0 with a wide interval is not evidence of absence
    unsure = rule.decide(Interval.of([0.05, -0.05, 0.04, -0.04]))
    assert unsure.status == INCONCLUSIVE and UNDERPOWERED in unsure.qualifiers
    assert unsure.interval.bounds()[0] < 0 < unsure.interval.bounds()[1]
    assert DescrStatsW(np.array([0.05, -0.05, 0.04, -0.04])).ttost_mean(-0.02, 0.02)[0] > 0.05
    assert rule.decide(Interval.of([0.10, 0.11, 0.09])).status == NOT_REPRODUCED
    edge = rule.decide(Interval.of([0.019, 0.021, 0.020, 0.0205, 0.0195]))
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers


def test_thresholds_need_a_source_and_valid_parameters():
    with pytest.raises(ValueError, match="source"):
        AtLeast("x", 0.1, "tuned until it passed")
    with pytest.raises(ValueError, match="margin"):
        Within("x", 0.0, "a priori")
    with pytest.raises(ValueError, match="direction"):
        AtLeast("x", 0.1, "a priori", direction=0)
    assert "paper" in FLOOR.text and "+-0.02" in Within("x", 0.02, "a priori").text


def test_random_effects_pooling_widens_for_bins_of_opposite_sign():
    # regime.phase at an earlier commit: two drift bins, +0.028 and -0.003, each precise on its own
    pooled = Interval.pooled([0.028, -0.003], [1e-5, 2e-5])
    lo, hi = pooled.bounds()
    assert lo < -0.15 and hi > 0.15
    # bins that agree more closely than their variances allow keep the plain random-effects error
    agree = Interval.pooled([0.010, 0.011, 0.012, 0.0105], [1e-4] * 4)
    assert agree.se == pytest.approx(0.005)
    assert Interval.pooled([0.2], [0.01]).bounds() == pytest.approx((0.2 - 1.96 * 0.1, 0.2 + 1.96 * 0.1), rel=1e-3)


def test_all_of_and_checks():
    rep, no, inc = (FLOOR.decide(Interval.of(v)) for v in ([0.3, 0.31, 0.32], [0.0, 0.01, 0.0], [-1.0, 1.0, 0.2]))
    assert all_of(rep, rep) == REPRODUCED
    assert all_of(rep, no) == NOT_REPRODUCED
    assert all_of(rep, inc) == INCONCLUSIVE
    assert check("0 violations", True).status == PASS and check("0 violations", False).status == FAIL


def test_controls_decided_in_one_place():
    pos_ok, neg_ok = ControlResult("positive", "planted", REPRODUCED), ControlResult("negative", "null", INCONCLUSIVE)
    assert apply_controls(REPRODUCED, [pos_ok, neg_ok]).status == REPRODUCED
    assert apply_controls(NOT_REPRODUCED, [pos_ok, neg_ok]).status == NOT_REPRODUCED
    d = apply_controls(REPRODUCED, [ControlResult("positive", "planted", INCONCLUSIVE), neg_ok])
    assert d.status == CONTROL_FAILED and d.failed == ("planted",) and d.rule_status == REPRODUCED
    d = apply_controls(REPRODUCED, [pos_ok, ControlResult("negative", "magnitude-matched null", REPRODUCED)])
    assert d.status == CONTROL_FAILED and "magnitude-matched null" in d.reason
    d = apply_controls(REPRODUCED, [pos_ok, neg_ok, ControlResult("placebo", "RL at the SFT rate", REPRODUCED)])
    assert d.status == CONTROL_FAILED and "explained by update size" in d.reason
    # checks: the positive control must PASS, the negative must not
    assert apply_controls(PASS, [ControlResult("positive", "equality case", PASS),
                                 ControlResult("negative", "mismatched rhs", FAIL)]).status == PASS
    assert apply_controls(PASS, [ControlResult("positive", "equality case", PASS),
                                 ControlResult("negative", "mismatched rhs", PASS)]).status == CONTROL_FAILED
    with pytest.raises(ValueError, match="positive and a negative"):
        apply_controls(REPRODUCED, [pos_ok])
    with pytest.raises(ValueError, match="kind"):
        ControlResult("other", "x", REPRODUCED)
