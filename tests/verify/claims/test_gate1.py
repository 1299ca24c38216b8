"""Gate I decision rules (verify/claims/gate1.py) on hand-made numbers and on synthetic policy steps, every outcome
reached; gate1.leash and gate1.clip_only share one rule."""

import numpy as np

from verify.claims import gate1 as G1
from verify.controls.policies import SYNTH_SEEDS, synthetic_clip, synthetic_fisher_ratio, synthetic_leash, synthetic_psd_leash
from verify.measures.kl_steps import share_within
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_leash_rule_reaches_every_outcome():
    assert G1.decide_leash([1.0, 0.97, 0.95]) == REPRODUCED
    assert G1.decide_leash([0.2, 0.4, 0.3]) == NOT_REPRODUCED
    assert G1.decide_leash([1.0, 0.7, 0.9]) == INCONCLUSIVE


def test_leash_rule_on_synthetic_steps():
    assert G1.decide_leash([share_within(*synthetic_leash(s, "tilt")) for s in SYNTH_SEEDS]) == REPRODUCED
    assert G1.decide_leash([share_within(*synthetic_leash(s, "large")) for s in SYNTH_SEEDS]) != REPRODUCED
    assert G1.decide_leash([share_within(*synthetic_clip(s, 0.2, True)) for s in SYNTH_SEEDS]) == REPRODUCED
    assert G1.decide_leash([share_within(*synthetic_clip(s, 0.2, False)) for s in SYNTH_SEEDS]) != REPRODUCED


def test_fisher_rule_reaches_every_outcome():
    assert G1.decide_fisher([0.99, 1.02, 1.1]) == REPRODUCED
    assert G1.decide_fisher([3.0, 2.5, 4.0]) == NOT_REPRODUCED
    assert G1.decide_fisher([1.0, 1.5, 1.1]) == INCONCLUSIVE
    assert G1.decide_fisher([synthetic_fisher_ratio(s, 1e-3) for s in SYNTH_SEEDS]) == REPRODUCED
    assert G1.decide_fisher([synthetic_fisher_ratio(s, 8.0) for s in SYNTH_SEEDS]) != REPRODUCED


def test_closer_rule_reaches_every_outcome():
    assert G1.decide_closer([2.0, 3.0, 2.5], [0.1, 0.12, 0.11])[0] == REPRODUCED
    assert G1.decide_closer([0.1, 0.12, 0.11], [2.0, 3.0, 2.5])[0] == NOT_REPRODUCED
    status, est = G1.decide_closer([1.0, 0.5, 2.0], [1.0, 1.0, 1.0])
    assert status == INCONCLUSIVE and est.mean == np.mean(np.log([1.0, 0.5, 2.0]))


def test_weight_leash_rule_reaches_every_outcome():
    assert G1.decide_weight_leash([True, True], [0.3, 0.5]) == REPRODUCED
    assert G1.decide_weight_leash([True, False], [0.3, 1.2]) == NOT_REPRODUCED
    assert G1.decide_weight_leash([True, True], [0.006, 0.008]) == INCONCLUSIVE  # holds but vacuous
    norm, b_pos, b_neg = synthetic_psd_leash()
    assert G1.decide_weight_leash([norm <= b_pos], [norm / b_pos]) == REPRODUCED
    assert G1.decide_weight_leash([norm <= b_neg], [norm / b_neg]) == NOT_REPRODUCED
