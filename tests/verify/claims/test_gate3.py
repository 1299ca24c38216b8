"""Gate III decision rules (verify/claims/gate3.py) on hand-made and planted numbers, every outcome reached."""

from verify.claims import gate3 as G3
from verify.controls.updates import hand_made_probe_mismatches, planted_disagreement, planted_sparsity, sub_ulp_share
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_sparsity_rule_reaches_every_outcome():
    assert G3.decide_sparsity([0.5, 0.55, 0.52], [0.1, 0.12, 0.11])[0] == REPRODUCED
    assert G3.decide_sparsity([0.15, 0.16, 0.15], [0.05, 0.06, 0.05])[0] == NOT_REPRODUCED  # sparser, but not sparse
    assert G3.decide_sparsity([0.1, 0.12, 0.11], [0.5, 0.55, 0.52])[0] == NOT_REPRODUCED  # SFT sparser
    assert G3.decide_sparsity([0.5, 0.1, 0.3], [0.3, 0.3, 0.3])[0] == INCONCLUSIVE
    planted = [planted_sparsity(s, True) for s in range(3)], [planted_sparsity(s, False) for s in range(3)]
    assert G3.decide_sparsity(*planted)[0] == REPRODUCED


def test_sweep_rule_reaches_every_outcome():
    assert G3.decide_sweep([1e-5, 1e-2], [[0.97, 0.96], [0.05, 0.06]])[0] == REPRODUCED
    assert G3.decide_sweep([1e-5, 1e-2], [[0.09, 0.09], [0.09, 0.09]])[0] == NOT_REPRODUCED  # flat (fp32 storage)
    assert G3.decide_sweep([1e-5, 1e-3, 1e-2], [[0.9], [0.5], [0.3]])[0] == INCONCLUSIVE  # falls, but not to < 0.1
    lrs = [1e-5, 1e-4, 1e-3, 1e-2]
    assert G3.decide_sweep(lrs, [[sub_ulp_share(lr)] for lr in lrs])[0] == REPRODUCED


def test_probe_and_visibility_rules_reach_both_outcomes():
    assert G3.decide_probe({"relative_mismatch": 0}) == REPRODUCED
    assert G3.decide_probe({"relative_mismatch": 3}) == NOT_REPRODUCED
    assert G3.decide_probe({"relative_mismatch": hand_made_probe_mismatches()}) == REPRODUCED
    assert G3.decide_visibility(0.995) == REPRODUCED
    assert G3.decide_visibility(0.95) == NOT_REPRODUCED
    assert G3.decide_visibility(1.0 - planted_disagreement()) == REPRODUCED
