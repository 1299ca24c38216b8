"""The consistency claims' decision rules (verify/claims/consistency.py, C3 and C4) on hand-made numbers and on
planted masks run through the real statistics against the magnitude-matched null, every outcome of each rule
reached, and their controls coming out the way they must."""

import numpy as np
import pytest

from theory.precision import to_bf16
from verify.claims import consistency as cc
from verify.controls.masks import planted_masks, planted_rows, planted_stripes, planted_temporal
from verify.measures import nulls
from verify.measures.masks import ulp_strata
from verify.measures.temporal import min_corr_from
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from verify.rules import AT_THE_EDGE

SHAPES = {"block0/attn/q": (24, 24), "block0/attn/k": (24, 24), "block0/attn/v": (24, 24), "block0/attn/o": (24, 24),
          "block0/fc_in": (48, 24)}


@pytest.fixture(scope="module")
def base():
    """(W0 rounded to bf16, ULP strata) of a synthetic base with the tiny base's scale of weights."""
    rng = np.random.default_rng(3)
    w0 = {n: np.asarray(to_bf16(rng.normal(0, 0.12, s)), np.float64) for n, s in SHAPES.items()}
    return w0, {n: ulp_strata(w) for n, w in w0.items()}


def test_jaccard_rule_reaches_every_outcome():
    assert cc.decide_jaccard([0.05, 0.06, 0.055, 0.07, 0.065, 0.058]).status == REPRODUCED
    # overlap beyond the null, but clearly less than the 0.02 a researcher would care about
    assert cc.decide_jaccard([0.004, 0.006, 0.005, 0.004, 0.005, 0.006]).status == NOT_REPRODUCED
    # an interval that contains 0 and the floor: nothing decided
    out = cc.decide_jaccard([-0.03, 0.08, 0.02, 0.0])
    assert out.status == INCONCLUSIVE and out.interval.bounds()[0] < 0 < cc.JACCARD.floor < out.interval.bounds()[1]
    edge = cc.decide_jaccard([0.019, 0.021, 0.02, 0.0205, 0.0195])
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers


def test_jaccard_controls_on_planted_masks(base):
    """A shared preferred set reproduces; magnitude-driven rates alone and null draws of the planted masks do not."""
    w0, st = base
    shapes = {n: w.shape for n, w in w0.items()}
    shared = planted_masks(st, shapes, 6, seed=11, shared=0.8)
    assert cc.decide_jaccard(list(nulls.jaccard_excess(nulls.set_nulls(w0, shared)).values())).status == REPRODUCED
    magnitude_only = planted_masks(st, shapes, 6, seed=12, shared=0.0)
    assert cc.decide_jaccard(list(nulls.jaccard_excess(nulls.set_nulls(w0, magnitude_only)).values())).status == NOT_REPRODUCED
    drawn = nulls.null_masks(w0, shared, seed=1)
    assert cc.decide_jaccard(list(nulls.jaccard_excess(nulls.set_nulls(w0, drawn)).values())).status != REPRODUCED
    # a null draw keeps each run's changed count per equal-ULP stratum in expectation, not its positions
    for n in w0:
        assert abs(drawn[0][n].mean() - shared[0][n].mean()) < 0.1


def test_also_in_sft_qualifier_needs_both_to_reproduce():
    yes, no = cc.decide_jaccard([0.05, 0.06, 0.055]), cc.decide_jaccard([0.001, 0.0, 0.002])
    assert cc.also_in_sft(yes, yes) == (cc.ALSO_IN_SFT,)
    assert cc.also_in_sft(yes, no) == () and cc.also_in_sft(no, yes) == ()


def test_stripes_rule_reaches_every_outcome():
    assert cc.decide_stripes(5.0).status == REPRODUCED  # 5 - 1.96 > 2
    assert cc.decide_stripes(-0.5).status == NOT_REPRODUCED  # -0.5 + 1.96 < 2
    assert cc.decide_stripes(3.5).status == INCONCLUSIVE  # [1.54, 5.46] straddles 2
    edge = cc.decide_stripes(2.5)
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers
    assert AT_THE_EDGE not in cc.decide_stripes(3.5).qualifiers
    assert cc.decide_stripes(1.0).status == INCONCLUSIVE  # contains 0 and the floor
    assert cc.decide_stripes(float("nan")).status == INCONCLUSIVE


def test_stripes_controls_on_planted_masks(base):
    w0, st = base
    shapes = {n: w.shape for n, w in w0.items()}
    right = planted_stripes(st, shapes, 6, 2, True)
    z, per = nulls.stripe_z(nulls.set_nulls(w0, right))
    assert cc.decide_stripes(z).status == REPRODUCED and set(per) == {f"block0/attn/{x}" for x in "qkvo"}
    wrong, _ = nulls.stripe_z(nulls.set_nulls(w0, planted_stripes(st, shapes, 6, 2, False)))
    assert cc.decide_stripes(wrong).status != REPRODUCED  # stripes on the other axis
    drawn, _ = nulls.stripe_z(nulls.set_nulls(w0, nulls.null_masks(w0, right, seed=1)))
    assert cc.decide_stripes(drawn).status != REPRODUCED


def test_stripe_z_is_standard_under_the_null(base):
    """Masks drawn from the null itself give a combined z of mean about 0 and SD about 1 (Stouffer over 4 matrices)."""
    w0, st = base
    shapes = {n: w.shape for n, w in w0.items()}
    source = planted_masks(st, shapes, 4, seed=5, shared=0.0)
    zs = [nulls.stripe_z(nulls.set_nulls(w0, nulls.null_masks(w0, source, seed=s), seed=s, draws=100))[0] for s in range(12)]
    assert abs(np.mean(zs)) < 1.0 and 0.4 < np.std(zs) < 1.8


def test_temporal_rule_reaches_every_outcome():
    assert cc.decide_temporal([0.9, 0.92, 0.95]).status == REPRODUCED
    assert cc.decide_temporal([0.1, 0.2, 0.15]).status == NOT_REPRODUCED
    assert cc.decide_temporal([0.5, 0.9, 0.7]).status == INCONCLUSIVE
    shapes = {"block0/attn/q": (32, 32), "block0/fc_in": (64, 32)}
    steps = list(range(4, 33, 4))
    stable = [min_corr_from(planted_rows(shapes, steps, s, True), 8) for s in range(3)]
    unstable = [min_corr_from(planted_rows(shapes, steps, s, False), 8) for s in range(3)]
    assert cc.decide_temporal(stable).status == REPRODUCED
    assert cc.decide_temporal(unstable).status == NOT_REPRODUCED


def test_temporal_negative_control_removes_a_planted_stable_pattern(base, monkeypatch):
    """Null draws made independently at every snapshot of planted nested masks (a stable row/column pattern beyond
    magnitude) lose the pattern: the rule does not reproduce on them, while it does on the masks themselves."""
    w0, _ = base
    shapes = {n: w.shape for n, w in w0.items()}
    steps = list(range(4, 33, 4))
    per_seed = {s: dict(zip(steps, planted_temporal(shapes, steps, s, True))) for s in range(3)}
    monkeypatch.setattr(nulls, "changed", lambda ctx, run, t: per_seed[run][t])
    assert cc.decide_temporal([min_corr_from(planted_rows(shapes, steps, s, True), 8) for s in range(3)]).status == REPRODUCED
    drawn = [nulls.null_profile_min_corr(None, s, steps, 8, w0, seed=1 + s) for s in range(3)]
    assert cc.decide_temporal(drawn).status != REPRODUCED


@pytest.mark.parametrize("name", ["tiny", "quick"])
def test_c3_runs_differ_in_seed_and_read_the_random_base_runs(name):
    """Every C3 RL run has a seed of its own (the variants' come after the profile's), and the random-init runs are
    control.random_base's definition: every profile seed, ``random_init_steps`` steps, the un-pretrained base."""
    from verify.experiments import cases
    from verify.profiles import get_profile

    p = get_profile(name)
    runs = cases.consistency(p)
    seeds = [s.train.seed for s in runs["rl"].values()]
    assert len(seeds) >= 5 and len(set(seeds)) == len(seeds) and set(p.seeds) < set(seeds)
    assert min(cases.variant_seeds(p)) > max(p.seeds)
    rnd = runs["random_init"]
    assert [s.train.seed for s in rnd] == list(p.seeds)
    assert all(s.train.max_steps == p.random_init_steps and s.base == p.random_base() for s in rnd)
