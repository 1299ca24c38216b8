"""masked.rl's decision rule (verify/claims/masked.py, C14) on hand-made and planted numbers, every outcome reached."""

from verify.claims import masked as cm
from verify.controls.numbers import planted_masked
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_masked_rule_reaches_every_outcome():
    assert cm.decide_masked(*planted_masked(1))[0] == REPRODUCED
    dense, principal, safe, dist = planted_masked(2)
    assert cm.decide_masked(principal, dense, safe, dist)[0] == NOT_REPRODUCED  # principal-only gains most
    farthest = dict(dist, safe=[5.0, 5.0, 5.0])
    assert cm.decide_masked(dense, principal, safe, farthest)[0] == NOT_REPRODUCED
    middle = dict(dist, safe=[0.35, 0.35, 0.35])  # gains in the paper's order, safe's KL neither closest nor farthest
    assert cm.decide_masked(dense, principal, safe, middle)[0] == INCONCLUSIVE


def test_a_mask_that_leaked_makes_the_claim_inconclusive():
    assert cm.decide_masked(*planted_masked(1), frozen_changed=3)[0] == INCONCLUSIVE
