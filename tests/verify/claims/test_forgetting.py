"""forgetting.rl_vs_sft and forgetting.predictor decision rules on hand-made and planted numbers, every outcome
reached; the jackknife and Fisher-z intervals; the tokens and parameters of the planted-forgetting control."""

import numpy as np
import pytest

from verify.claims import forgetting as F
from verify.controls.forgetting import planted_forgetting, planted_predictors, private_tokens
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from verify.rules import Interval

TASKS = ("add", "mod", "sort", "rev")


def test_rl_vs_sft_rule_reaches_every_outcome():
    assert F.decide_more([0.10, 0.12, 0.09, 0.11, 0.10]).status == REPRODUCED
    assert F.decide_more([0.005, 0.0, 0.01, -0.005, 0.004]).status == NOT_REPRODUCED  # below the floor: no effect
    # clearly above 0 but not clearly above the 0.02 floor
    out = F.decide_more([0.02, 0.04, 0.01, 0.03, 0.015])
    assert out.status == INCONCLUSIVE and out.interval.bounds()[0] > 0
    # an interval that contains 0 without equivalence
    out = F.decide_more([0.1, -0.08, 0.05, -0.06, 0.02])
    lo, hi = out.interval.bounds()
    assert out.status == INCONCLUSIVE and lo < 0 < hi
    # the 'no difference' row: equivalence within 0.02, and its other outcomes
    assert F.NO_DIFFERENCE.decide(Interval.of([0.002, -0.003, 0.001, 0.0, 0.001])).status == REPRODUCED
    assert F.NO_DIFFERENCE.decide(Interval.of([0.10, 0.12, 0.09, 0.11, 0.10])).status == NOT_REPRODUCED
    assert F.NO_DIFFERENCE.decide(Interval.of([0.1, -0.08, 0.05, -0.06, 0.02])).status == INCONCLUSIVE


def test_kl_best_rule_reaches_every_outcome():
    forget, preds = planted_predictors(F.PLANTED_RUNS, F.PLANTED_SEED, F.PREDICTORS)
    status, out = F.decide_kl_best(forget, preds)
    assert status == REPRODUCED and len(out) == 3
    # another predictor tracks forgetting as well as KL: the differences sit at 0, below the 0.1 floor
    same = {**preds, "drift_ratio": preds["kl"] * 2.0}
    status, out = F.decide_kl_best(forget, same)
    assert status == NOT_REPRODUCED and out["rho(KL) - rho(drift_ratio)"].status == NOT_REPRODUCED
    # KL is noise: the planted runs with KL permuted (the negative control's construction)
    shuffled = {**preds, "kl": np.random.default_rng(1).permutation(preds["kl"])}
    assert F.decide_kl_best(forget, shuffled)[0] != REPRODUCED
    # KL slightly better than a noisy rival on few runs: the intervals straddle the floor
    rng = np.random.default_rng(3)
    f = rng.uniform(0, 0.2, 12)
    few = {"kl": f + rng.normal(0, 0.03, 12), "relative_update_norm": f + rng.normal(0, 0.05, 12),
           "changed_share": f + rng.normal(0, 0.05, 12), "drift_ratio": f + rng.normal(0, 0.05, 12)}
    assert F.decide_kl_best(f, few)[0] == INCONCLUSIVE


def test_jackknife_and_fisher_intervals():
    rng = np.random.default_rng(0)
    f = rng.uniform(size=30)
    iv = F.jackknife_difference(f, f, rng.uniform(size=30))
    assert iv.n == 30 and 0.5 < iv.mean < 1.3 and iv.bounds()[0] > 0.3
    assert F.jackknife_difference(f, f, f).mean == pytest.approx(0.0)
    lo, hi = F.fisher_interval(0.5, 30)
    assert lo < 0.5 < hi and -1 < lo and hi < 1
    assert np.isnan(F.fisher_interval(0.5, 3)[0]) and np.isnan(F.rank_correlation([1, 1, 1], [1, 2, 3]))


def test_private_tokens_are_those_only_the_untrained_tasks_use():
    from toy_models.tasks import encode

    toks = private_tokens(TASKS, ("sort",), 1)
    assert set(encode("rabcdefghij")) <= set(toks)  # rev's letters
    assert set(encode("+")) <= set(toks) and set(encode("m")) <= set(toks)  # add's and mod's operators
    assert not set(toks) & set(encode("0123456789s:="))  # sort's characters stay readable
    assert private_tokens(TASKS, TASKS, 1) == []


def test_planted_forgetting_changes_only_the_named_embedding_rows():
    flat = {"embed.embedding": np.ones((8, 4), np.float32), "block0/fc_in.kernel": np.full((4, 4), 2.0, np.float32)}
    out = planted_forgetting(flat, [1, 5], seed=0)
    assert np.array_equal(out["block0/fc_in.kernel"], flat["block0/fc_in.kernel"])
    changed_rows = np.flatnonzero(np.any(out["embed.embedding"] != flat["embed.embedding"], axis=1))
    assert changed_rows.tolist() == [1, 5]
    assert np.array_equal(flat["embed.embedding"], np.ones((8, 4)))  # the input is not modified
