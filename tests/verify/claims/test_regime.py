"""The regime map's decision rules (verify/claims/regime.py) on hand-made and planted numbers, every outcome of each
rule reached (the sweeps' rules, verify/claims/regime_map.py: tests/verify/claims/test_regime_map.py)."""

import math

import numpy as np
import pytest

from theory.null import null_mask, null_rng
from theory.precision import changed_mask_bitwise, to_bf16
from verify.claims import regime as R
from verify.controls.masks import thinned_in_region
from verify.controls.updates import planted_predictor
from verify.measures.masks import principal_and_low_magnitude, principal_null_excess
from verify.registry import FAIL, INCONCLUSIVE, NOT_REPRODUCED, PASS, REPRODUCED

# ----------------------------------------------------------------------------------------------
# regime.predictor


def test_predictor_check_reaches_both_outcomes():
    assert R.decide_predictor(*planted_predictor(0))[0] == PASS
    pred, meas = planted_predictor(1)
    assert R.decide_predictor(pred[::-1], meas)[0] == FAIL  # another run's drifts
    # a good fit whose largest miss is too big: R^2 0.96, miss 0.06
    status, q = R.decide_predictor([0.1, 0.3, 0.5, 0.7, 0.84], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert q["r2"] >= R.PREDICTOR_R2 and q["max_abs_miss"] > R.PREDICTOR_MISS and status == FAIL


# ----------------------------------------------------------------------------------------------
# regime.magnitude


def test_magnitude_rule_reaches_every_outcome():
    out, equiv = R.decide_magnitude([-0.03, -0.025, -0.035])
    assert out.status == REPRODUCED and equiv.status == NOT_REPRODUCED  # beyond magnitude, and not explained by it
    out, equiv = R.decide_magnitude([-0.001, 0.002, 0.0, 0.001, -0.002])
    assert out.status == NOT_REPRODUCED and equiv.status == REPRODUCED  # explained by magnitude (equivalence)
    out, equiv = R.decide_magnitude([-0.04, 0.03, 0.0])  # contains 0, too wide for the margin: nothing shown
    assert out.status == INCONCLUSIVE and equiv.status == INCONCLUSIVE
    assert R.decide_magnitude([0.02, 0.03, 0.025])[0].status == NOT_REPRODUCED  # a preference for principal weights
    assert R.decide_magnitude([math.nan])[0].status == INCONCLUSIVE  # nothing changed


def _magnitude_only(seed: int, shape=(64, 64), n=3):
    """Synthetic block matrices and the changed mask of one Gaussian drift of every weight (bf16 export): changes
    driven by magnitude alone."""
    rng = np.random.default_rng(100 + seed)
    w0s = {f"block0/m{i}": np.asarray(to_bf16(rng.normal(0, 0.1, shape)), np.float64) for i in range(n)}
    changed = {k: changed_mask_bitwise(w, np.asarray(to_bf16(w + rng.normal(0, 3e-4, shape)), np.float64))
               for k, w in w0s.items()}
    principal = {k: principal_and_low_magnitude(w, 0.5)[0] for k, w in w0s.items()}
    return w0s, changed, principal


@pytest.mark.parametrize("seed", [0, 1])
def test_magnitude_statistic_on_null_draws_and_planted_avoidance(seed):
    null_ex, planted_ex, own_ex = [], [], []
    for s in range(4):
        w0s, changed, principal = _magnitude_only(10 * seed + s)
        draw = {k: null_mask(w0s[k], changed[k], null_rng(k, s)) for k in w0s}
        own_ex.append(principal_null_excess(w0s, changed, principal, s)["excess"])
        null_ex.append(principal_null_excess(w0s, draw, principal, s)["excess"])
        planted = thinned_in_region(draw, principal, 0.5, s)
        planted_ex.append(principal_null_excess(w0s, planted, principal, s)["excess"])
    assert R.decide_magnitude(planted_ex)[0].status == REPRODUCED
    assert R.decide_magnitude(null_ex)[0].status != REPRODUCED
    assert R.decide_magnitude(own_ex)[0].status != REPRODUCED  # magnitude-driven changes are not beyond magnitude


