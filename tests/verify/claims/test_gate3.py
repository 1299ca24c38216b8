"""Gate III decision rules (verify/claims/gate3.py) on hand-made and planted numbers, every outcome reached."""

from verify.claims import gate3 as G3
from verify.controls.updates import hand_made_probe_mismatches, planted_disagreement, planted_sparsity, sub_ulp_share
from verify.registry import FAIL, INCONCLUSIVE, NOT_REPRODUCED, PASS, REPRODUCED
from verify.rules import AT_THE_EDGE


def test_sparsity_rule_reaches_every_outcome():
    # sparse (whole interval above 0.36) and sparser than the comparator by more than 0.17
    assert G3.decide_sparsity([0.50, 0.55, 0.52], [0.40, 0.43, 0.41])[0] == REPRODUCED
    # sparser than the comparator, but not sparse: the paper's band is not reached
    assert G3.decide_sparsity([0.20, 0.22, 0.21], [0.14, 0.15, 0.16])[0] == NOT_REPRODUCED
    # sparse, but the difference (clearly above 0) stays below the 0.17 floor: an effect too small to count
    status, a, b = G3.decide_sparsity([0.50, 0.55, 0.52], [0.05, 0.06, 0.05])
    assert status == NOT_REPRODUCED and a.status == REPRODUCED and b.interval.bounds()[0] > 0
    # an interval that straddles a floor is INCONCLUSIVE, at the edge when the estimate sits within one SE of it
    status, a, _ = G3.decide_sparsity([0.35, 0.37, 0.36, 0.365, 0.355], [0.30, 0.31, 0.30, 0.29, 0.30])
    assert status == INCONCLUSIVE and AT_THE_EDGE in a.qualifiers
    planted_rl = [planted_sparsity(s, True) for s in range(3)]
    planted_diff = [planted_sparsity(s, True) - planted_sparsity(s, False) for s in range(3)]
    assert G3.decide_sparsity(planted_rl, planted_diff)[0] == REPRODUCED


def test_sweep_rule_reaches_every_outcome():
    assert G3.decide_sweep([1e-5, 1e-2], [[0.97, 0.96], [0.05, 0.06]])[0] == PASS
    assert G3.decide_sweep([1e-5, 1e-2], [[0.09, 0.09], [0.09, 0.09]])[0] == FAIL  # flat (fp32 storage)
    assert G3.decide_sweep([1e-5, 1e-3, 1e-2], [[0.9], [0.5], [0.3]])[0] == FAIL  # falls, but not to < 0.1
    lrs = [1e-5, 1e-4, 1e-3, 1e-2]
    assert G3.decide_sweep(lrs, [[sub_ulp_share(lr)] for lr in lrs])[0] == PASS


def test_probe_and_visibility_rules_reach_both_outcomes():
    assert G3.decide_probe({"relative_mismatch": 0}) == PASS
    assert G3.decide_probe({"relative_mismatch": 3}) == FAIL
    assert G3.decide_probe({"relative_mismatch": hand_made_probe_mismatches()}) == PASS
    assert G3.decide_visibility(0.995) == PASS
    assert G3.decide_visibility(0.95) == FAIL
    assert G3.decide_visibility(1.0 - planted_disagreement()) == PASS
