"""Gate II decision rules (verify/claims/gate2.py) on hand-made numbers and planted updates, every outcome reached:
gate2.bounds is a check, spectrum / energy / curvature are claims on log2(comparator / RL), principal_overlap a claim
on RL's mask shares against alpha."""

import math

import numpy as np

from verify.claims import gate2 as G2
from verify.comparison import NEXT_SEED, PLACEBO, Comparison
from verify.controls.masks import avoiding_principal
from verify.controls.updates import PLANTED_SEEDS, planted, planted_energy_ratios, planted_spectrum, top_pair_planted
from verify.measures.masks import in_mask_share, principal_and_low_magnitude
from verify.measures.spectra import bound_values
from verify.registry import FAIL, INCONCLUSIVE, NOT_REPRODUCED, PASS, REPRODUCED
from verify.rules import Interval
from verify.stats import log2_ratio


def _base_pairs(seed=123, n=3, shape=(32, 32)):
    """Base matrices of the toy's block shape (a seed apart from the planted updates' own seeds 0..5005)."""
    rng = np.random.default_rng(seed)
    return {f"block0/m{i}": (W, W) for i, W in enumerate(rng.normal(0, 0.1, (n, *shape)))}


def test_bounds_check_reaches_both_outcomes():
    rng = np.random.default_rng(0)
    W0 = rng.normal(0, 0.1, (16, 12))
    dW = 1e-3 * rng.standard_normal(W0.shape)
    assert G2.decide_bounds([bound_values(W0, dW), bound_values(W0, top_pair_planted(W0))])[0] == PASS
    status, counts = G2.decide_bounds([bound_values(W0, dW, dW_rhs=0.1 * dW)])  # rhs of a tenth of the update
    assert status == FAIL and counts["weyl"]["violations"] == 1


def test_log2_ratio():
    assert log2_ratio(8.0, 2.0) == 2.0 and log2_ratio(1.0, 4.0) == -2.0
    assert math.isinf(log2_ratio(1.0, 0.0)) and math.isnan(log2_ratio(0.0, 0.0))


def test_spectrum_rule_reaches_every_outcome():
    assert G2.decide_spectrum([3.2, 3.4, 3.3], [2.5, 2.8, 2.6])[0] == REPRODUCED  # both a factor 2 and more
    # NSS far larger, but the angle only 1.2x: the angle's interval lies wholly below 1
    status, nss, ang = G2.decide_spectrum([3.2, 3.4, 3.3], [0.25, 0.3, 0.28])
    assert (status, nss.status, ang.status) == (NOT_REPRODUCED, REPRODUCED, NOT_REPRODUCED)
    # an interval containing 0 without equivalence reproduces nothing either way
    assert G2.decide_spectrum([-2.0, 3.0, 1.0], [2.5, 2.8, 2.6])[0] == INCONCLUSIVE
    pl = planted_spectrum(_base_pairs())
    p_nss = [log2_ratio(c, r) for c, r in zip(pl["rot"][0], pl["off"][0])]
    p_ang = [log2_ratio(c, r) for c, r in zip(pl["rot"][1], pl["off"][1])]
    assert G2.decide_spectrum(p_nss, p_ang)[0] == REPRODUCED
    assert G2.decide_spectrum([0.0] * 6, [0.0] * 6)[0] == NOT_REPRODUCED  # equal sizes: no factor 2


def test_overlap_rule_reaches_every_outcome():
    assert G2.decide_overlap([-0.05, -0.04, -0.06], [0.05, 0.04, 0.06])[0] == REPRODUCED
    # below alpha on the principal mask, but by less than the 0.01 floor: NOT REPRODUCED
    status, p, _ = G2.decide_overlap([-0.004, -0.005, -0.006], [0.05, 0.04, 0.06])
    assert status == NOT_REPRODUCED and p.interval.bounds()[1] < 0
    assert G2.decide_overlap([0.05, 0.04, 0.06], [-0.05, -0.04, -0.06])[0] == NOT_REPRODUCED
    assert G2.decide_overlap([-0.05, 0.04, 0.0], [0.05, 0.04, 0.06])[0] == INCONCLUSIVE  # contains 0


def test_overlap_rule_on_planted_and_shuffled_masks():
    base = {n: principal_and_low_magnitude(W0, 0.5) for n, (W0, _) in _base_pairs(n=4).items()}
    shares = [in_mask_share(avoiding_principal({n: P for n, (P, _) in base.items()}, s), base) for s in PLANTED_SEEDS]
    assert G2.decide_overlap([v[0] for v in shares], [v[1] for v in shares])[0] == REPRODUCED
    rng = np.random.default_rng(3)  # changes placed at random: no preference for either mask
    rand = [in_mask_share({n: rng.random(P.shape) < 0.5 for n, (P, _) in base.items()}, base) for _ in range(5)]
    assert G2.decide_overlap([v[0] for v in rand], [v[1] for v in rand])[0] != REPRODUCED


def test_energy_rule_reaches_every_outcome():
    assert G2.decide_energy([1.5, 1.7, 1.6]).status == REPRODUCED
    assert G2.decide_energy([0.2, 0.3, 0.25]).status == NOT_REPRODUCED
    assert G2.decide_energy([-1.0, 2.0, 0.5]).status == INCONCLUSIVE
    pairs = _base_pairs()
    off, prin = planted_energy_ratios(pairs, "off_principal"), planted_energy_ratios(pairs, "principal")
    assert G2.decide_energy([log2_ratio(p, o) for p, o in zip(prin, off)]).status == REPRODUCED
    assert G2.decide_energy([log2_ratio(o, p) for p, o in zip(prin, off)]).status == NOT_REPRODUCED


def test_curvature_rule_reaches_every_outcome():
    assert G2.decide_curvature([3.0, 3.5, 3.2]).status == REPRODUCED
    assert G2.decide_curvature([0.1, -0.1, 0.0]).status == NOT_REPRODUCED  # equal curvature, tight
    assert G2.decide_curvature([-1.0, 3.0, 1.0]).status == INCONCLUSIVE


def test_joint_controls_need_every_statistic():
    def comparison(placebo_values, next_values):
        rule = G2.NSS_RULE
        values = {PLACEBO: placebo_values, NEXT_SEED: next_values}
        return Comparison(values, {k: rule.decide(Interval.of(v)) for k, v in values.items()}, {}, [])

    a = comparison([2.0, 2.1, 2.2], [0.0, 0.1, -0.1])  # placebo reproduces on one statistic only
    b = comparison([0.0, 0.1, -0.1], [0.0, 0.1, -0.1])
    ctl = {c.kind: c.status for c in G2.joint_controls(a, b)}
    assert ctl == {"placebo": NOT_REPRODUCED, "negative": NOT_REPRODUCED}
    ctl = {c.kind: c.status for c in G2.joint_controls(a, a)}
    assert ctl["placebo"] == REPRODUCED


def test_planted_updates_have_the_asked_norm_and_place():
    rng = np.random.default_rng(1)
    W0 = rng.normal(0, 0.1, (16, 12))
    U, _, Vt = np.linalg.svd(W0)
    for kind in ("principal", "off_principal", "random"):
        d = planted(W0, kind, 0.5, 3, 7)
        assert abs(np.linalg.norm(d) - 0.5) < 1e-12
    off = planted(W0, "off_principal", 1.0, 3, 7)
    assert np.abs(U[:, :3].T @ off).max() < 1e-12 and np.abs(off @ Vt[:3].T).max() < 1e-12
