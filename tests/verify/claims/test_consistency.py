"""The consistency claims' decision rules (verify/claims/consistency.py, C3 and C4) on hand-made numbers and on
planted masks run through the real statistics, every outcome of each rule reached."""

import numpy as np

from verify.claims import consistency as cc
from verify.controls.masks import planted_masks, planted_rows, planted_stripes
from verify.measures.jaccard import excess_by_matrix, pairwise_jaccard
from verify.measures.stripes import stripe_test
from verify.measures.temporal import min_corr_from
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_jaccard_rule_reaches_every_outcome():
    assert cc.decide_jaccard([0.10, 0.12, 0.11, 0.09], [0.08, 0.09, 0.07, 0.10])[0] == REPRODUCED
    # beats the Bernoulli level but not the magnitude-matched one: the ULP confound
    assert cc.decide_jaccard([0.10, 0.12, 0.11, 0.09], [0.001, -0.002, 0.0, 0.001])[0] == NOT_REPRODUCED
    assert cc.decide_jaccard([0.10, 0.12, 0.11], [0.0, 0.2, 0.05])[0] == INCONCLUSIVE
    # both intervals above 0 but the means below the floor: not far more than chance
    assert cc.decide_jaccard([0.010, 0.011, 0.012], [0.010, 0.011, 0.012])[0] == NOT_REPRODUCED


def test_jaccard_rule_on_planted_masks():
    rng = np.random.default_rng(0)
    strata = {f"block0/{n}": rng.integers(0, 4, (24, 24)) for n in ("attn/q", "attn/v", "fc_in")}
    shapes = {n: s.shape for n, s in strata.items()}
    shared = excess_by_matrix(pairwise_jaccard(planted_masks(strata, shapes, 5, seed=11, shared=0.8), strata))
    magnitude_only = excess_by_matrix(pairwise_jaccard(planted_masks(strata, shapes, 5, seed=12, shared=0.0), strata))
    assert cc.decide_jaccard(*shared)[0] == REPRODUCED
    assert cc.decide_jaccard(*magnitude_only)[0] != REPRODUCED


def test_stripes_rule_reaches_every_outcome():
    assert cc.decide_stripes(0.001, 0.002) == REPRODUCED
    assert cc.decide_stripes(0.3, 0.4) == NOT_REPRODUCED
    assert cc.decide_stripes(0.01, 0.3) == NOT_REPRODUCED  # lines beyond independence that magnitude alone explains
    assert cc.decide_stripes(0.3, 0.01) == INCONCLUSIVE  # the two nulls disagree


def test_stripes_rule_on_planted_stripes():
    rng = np.random.default_rng(1)
    strata = {f"block0/attn/{x}": rng.integers(0, 3, (24, 24)) for x in "qkvo"}
    shapes = {n: s.shape for n, s in strata.items()}
    right = stripe_test(planted_stripes(strata, shapes, 5, 2, True), strata, draws=199)
    wrong = stripe_test(planted_stripes(strata, shapes, 5, 2, False), strata, draws=199)
    assert cc.decide_stripes(right["p_independence"], right["p_magnitude"]) == REPRODUCED
    # stripes on the other axis leave only the magnitude-driven line structure on the paper's axes: it beats the
    # independence null (so the control exercises the ULP confound) but not the magnitude null
    assert wrong["p_independence"] < cc.STRIPE_P <= wrong["p_magnitude"]
    assert cc.decide_stripes(wrong["p_independence"], wrong["p_magnitude"]) == NOT_REPRODUCED


def test_temporal_rule_reaches_every_outcome():
    assert cc.decide_temporal([0.9, 0.92, 0.95])[0] == REPRODUCED
    assert cc.decide_temporal([0.1, 0.2, 0.15])[0] == NOT_REPRODUCED
    assert cc.decide_temporal([0.5, 0.9, 0.7])[0] == INCONCLUSIVE
    shapes = {"block0/attn/q": (32, 32), "block0/fc_in": (64, 32)}
    steps = list(range(4, 33, 4))
    stable = [min_corr_from(planted_rows(shapes, steps, s, True), 8) for s in range(3)]
    unstable = [min_corr_from(planted_rows(shapes, steps, s, False), 8) for s in range(3)]
    assert cc.decide_temporal(stable)[0] == REPRODUCED
    assert cc.decide_temporal(unstable)[0] == NOT_REPRODUCED
