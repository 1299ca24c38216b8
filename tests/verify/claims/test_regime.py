"""The regime map's decision rules (verify/claims/regime.py) on hand-made and planted numbers, every outcome of each
rule reached (the sweeps' rules, verify/claims/regime_map.py: tests/verify/claims/test_regime_map.py)."""

import pytest

from verify.claims import regime as R
from verify.controls.masks import planted_strata
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
