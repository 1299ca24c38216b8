"""The regime map's decision rules (verify/claims/regime.py and regime_map.py) on hand-made and planted numbers,
every outcome of each rule reached."""

import math

import pytest

from verify.claims import regime as R
from verify.claims import regime_map as M
from verify.controls.masks import planted_strata
from verify.controls.numbers import planted_estimate, rising_sparsity, synthetic_phase
from verify.controls.updates import planted_predictor
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

# ----------------------------------------------------------------------------------------------
# regime.predictor


def test_predictor_rule_reaches_every_outcome():
    assert R.decide_predictor(*planted_predictor(0))[0] == REPRODUCED
    pred, meas = planted_predictor(1)
    assert R.decide_predictor(pred[::-1], meas)[0] == NOT_REPRODUCED
    # a good fit whose largest miss is too big: R^2 0.96, miss 0.06
    measured = [0.1, 0.3, 0.5, 0.7, 0.9]
    status, q = R.decide_predictor([0.1, 0.3, 0.5, 0.7, 0.84], measured)
    assert q["r2"] >= R.PREDICTOR_FAIL_R2 and q["max_abs_miss"] > R.PREDICTOR_MISS and status == INCONCLUSIVE


# ----------------------------------------------------------------------------------------------
# regime.magnitude


@pytest.mark.parametrize("seed", [0, 1])
def test_magnitude_rule_flips_on_planted_strata(seed):
    assert R.decide_magnitude([planted_strata(seed + s, True) for s in range(4)])[0] == REPRODUCED
    assert R.decide_magnitude([planted_strata(seed + s, False) for s in range(4)])[0] == NOT_REPRODUCED


def test_magnitude_rule_by_hand():
    assert R.decide_magnitude([-0.02, -0.03, -0.025])[0] == REPRODUCED
    assert R.decide_magnitude([-0.02, 0.03, 0.0])[0] == NOT_REPRODUCED  # explained by magnitude
    assert R.decide_magnitude([0.02, 0.03, 0.025])[0] == NOT_REPRODUCED  # a preference for principal weights
    assert R.decide_magnitude([float("nan")])[0] == INCONCLUSIVE  # nothing changed


# ----------------------------------------------------------------------------------------------
# regime.phase


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phase_rule_reaches_every_outcome(seed):
    assert M.decide_phase_metric(*synthetic_phase(seed, 0.2), +1)[:2] == (REPRODUCED, "method effect at matched regime")
    assert M.decide_phase_metric(*synthetic_phase(seed, -0.2), +1)[:2] == (NOT_REPRODUCED, "opposite method effect")
    assert M.decide_phase_metric(*synthetic_phase(seed, 0.0), +1)[:2] == (NOT_REPRODUCED, "explained by regime")
    x1, y1, x2, y2 = synthetic_phase(seed, 0.2)
    assert M.decide_phase_metric(x1 * 1e6, y1, x2, y2, +1)[:2] == (INCONCLUSIVE, "no overlap")
    assert M.decide_phase_metric(*synthetic_phase(seed, 0.2), -1)[:2] == (NOT_REPRODUCED, "opposite method effect")


def test_phase_rule_undecided_when_the_interval_is_wide():
    # one bin, noisy: the pooled interval straddles 0 and reaches beyond a quarter of the range
    x = [1.0, 1.1, 1.2]
    status, word, b = M.decide_phase_metric(x, [0.0, 1.0, 0.5], x, [0.6, 0.0, 0.3], +1)
    assert (status, word) == (INCONCLUSIVE, "undecided") and b["low"] < 0 < b["high"]


# ----------------------------------------------------------------------------------------------
# regime.width


def test_width_rule_reaches_every_outcome():
    assert M.decide_width(*rising_sparsity(True))[0] == REPRODUCED
    assert M.decide_width(*rising_sparsity(False))[0] == NOT_REPRODUCED
    w = [32, 64, 128, 256] * 2
    assert M.decide_width(w, [0.2, 0.25, 0.2, 0.25, 0.25, 0.2, 0.25, 0.2])[0] == INCONCLUSIVE
    assert M.decide_width([32, 64], [0.2, 0.3])[0] == INCONCLUSIVE  # too few runs for an interval


def test_band_width_extrapolates_the_fitted_trend():
    assert M.band_width([32, 64], [0.20, 0.24], level=0.36) == pytest.approx(32 * 2 ** 4)
    assert math.isnan(M.band_width([32, 64], [0.24, 0.20]))


# ----------------------------------------------------------------------------------------------
# regime.optimizer


def test_optimizer_rule_reaches_every_outcome():
    assert M.decide_optimizer(planted_estimate(0.2), planted_estimate(0.1)) == REPRODUCED
    assert M.decide_optimizer(planted_estimate(0.2), planted_estimate(0.0)) == NOT_REPRODUCED
    assert M.decide_optimizer(planted_estimate(0.0), planted_estimate(0.2)) == INCONCLUSIVE
