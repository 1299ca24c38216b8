"""Gate I decision rules (verify/claims/gate1.py) on hand-made numbers and on synthetic policy steps, every outcome
reached; gate1.leash and gate1.clip_only share one check; gate1.kl_to_base is a claim on log2 KL ratios."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from verify.claims import gate1 as G1
from verify.controls.policies import SYNTH_SEEDS, synthetic_clip, synthetic_fisher_ratio, synthetic_leash, synthetic_psd_leash
from verify.measures.kl_steps import share_within
from verify.registry import FAIL, INCONCLUSIVE, NOT_REPRODUCED, PASS, REPRODUCED
from verify.rules import AT_THE_EDGE


def test_leash_check_reaches_both_outcomes():
    assert G1.decide_leash([1.0, 0.97, 0.95]) == PASS
    assert G1.decide_leash([1.0, 0.7, 0.9]) == FAIL  # one seed below 0.95 is enough
    assert G1.decide_leash([0.2, 0.4, 0.3]) == FAIL
    assert G1.decide_leash([1.0, math.nan]) == FAIL  # a seed without steps cannot pass
    assert G1.decide_leash([]) == FAIL


def test_leash_check_on_synthetic_steps():
    assert G1.decide_leash([share_within(*synthetic_leash(s, "tilt")) for s in SYNTH_SEEDS]) == PASS
    assert G1.decide_leash([share_within(*synthetic_leash(s, "large")) for s in SYNTH_SEEDS]) == FAIL
    assert G1.decide_leash([share_within(*synthetic_clip(s, 0.2, True)) for s in SYNTH_SEEDS]) == PASS
    assert G1.decide_leash([share_within(*synthetic_clip(s, 0.2, False)) for s in SYNTH_SEEDS]) == FAIL


def test_fisher_check_reaches_both_outcomes():
    assert G1.decide_fisher([0.99, 1.02, 1.1]) == PASS
    assert G1.decide_fisher([1.0, 1.5, 1.1]) == FAIL  # one seed outside [0.8, 1.25]
    assert G1.decide_fisher([3.0, 2.5, 4.0]) == FAIL
    assert G1.decide_fisher([synthetic_fisher_ratio(s, 1e-3) for s in SYNTH_SEEDS]) == PASS
    assert G1.decide_fisher([synthetic_fisher_ratio(s, 8.0) for s in SYNTH_SEEDS]) == FAIL


def test_kl_rule_reaches_every_outcome():
    assert G1.decide_kl([2.0, 2.2, 2.1]).status == REPRODUCED  # the comparator 4x farther, whole interval above 1
    below = G1.decide_kl([0.3, 0.35, 0.4])  # clearly farther (interval above 0) but less than a factor 2: too small
    assert below.status == NOT_REPRODUCED and below.interval.bounds()[0] > 0
    assert G1.decide_kl([-2.0, 2.5, 0.4]).status == INCONCLUSIVE  # contains 0 (and 1): no evidence either way
    edge = G1.decide_kl([0.9, 1.1, 1.0, 0.95, 1.05])
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers
    assert G1.decide_kl([]).status == INCONCLUSIVE


def _run(kl, name="rl-abc"):
    return SimpleNamespace(summary={"kl_to_base_final": kl}, directory=Path("/runs") / name)


def test_kl_statistic_is_a_log2_ratio_and_refuses_missing_kl():
    assert G1.kl_log_ratio(_run(0.01), _run(0.04, "sft-x")) == pytest.approx(2.0)
    for bad in (0.0, None, math.nan, -1e-9):
        with pytest.raises(ValueError, match="sft-bad"):
            G1.kl_log_ratio(_run(0.01), _run(bad, "sft-bad"))


def test_weight_leash_check_reaches_both_outcomes_and_the_qualifier():
    assert G1.decide_weight_leash([True, True]) == PASS
    assert G1.decide_weight_leash([True, False]) == FAIL
    assert G1.decide_weight_leash([]) == FAIL
    assert G1.vacuous([0.006, 0.3]) and not G1.vacuous([0.3, 0.5])  # a bound 100x the norm says nothing
    norm, b_pos, b_neg = synthetic_psd_leash()
    assert G1.decide_weight_leash([norm <= b_pos]) == PASS and not G1.vacuous([norm / b_pos])
    assert G1.decide_weight_leash([norm <= b_neg]) == FAIL
