"""Gate II decision rules (verify/claims/gate2.py) on hand-made numbers and planted updates, every outcome reached."""

import numpy as np

from verify.claims import gate2 as G2
from verify.controls.updates import planted, planted_energy_ratios, planted_spectrum, top_pair_planted
from verify.measures.spectra import bound_values
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def _base_pairs(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return {f"block0/m{i}": (W, W) for i, W in enumerate(rng.normal(0, 0.1, (n, 16, 12)))}


def test_bounds_rule_reaches_both_outcomes():
    rng = np.random.default_rng(0)
    W0 = rng.normal(0, 0.1, (16, 12))
    dW = 1e-3 * rng.standard_normal(W0.shape)
    assert G2.decide_bounds([bound_values(W0, dW), bound_values(W0, top_pair_planted(W0))])[0] == REPRODUCED
    status, counts = G2.decide_bounds([bound_values(W0, dW, dW_rhs=0.1 * dW)])  # rhs of a tenth of the update
    assert status == NOT_REPRODUCED and counts["weyl"]["violations"] == 1


def test_spectrum_rule_reaches_every_outcome():
    assert G2.decide_spectrum([0.01, 0.012], [0.1, 0.11], [5.0, 6.0], [40.0, 45.0])[0] == REPRODUCED
    assert G2.decide_spectrum([0.1, 0.11], [0.01, 0.012], [40.0, 45.0], [5.0, 6.0])[0] == NOT_REPRODUCED
    assert G2.decide_spectrum([0.01, 0.012], [0.1, 0.11], [40.0, 45.0], [5.0, 6.0])[0] == INCONCLUSIVE
    pl = planted_spectrum(_base_pairs())
    assert G2.decide_spectrum(pl["off"][0], pl["rot"][0], pl["off"][1], pl["rot"][1])[0] == REPRODUCED


def test_overlap_rule_reaches_every_outcome():
    assert G2.decide_overlap([-0.05, -0.04, -0.06], [0.05, 0.04, 0.06])[0] == REPRODUCED
    assert G2.decide_overlap([0.05, 0.04, 0.06], [-0.05, -0.04, -0.06])[0] == NOT_REPRODUCED
    assert G2.decide_overlap([-0.05, -0.04, -0.06], [-0.05, -0.04, -0.06])[0] == INCONCLUSIVE


def test_energy_rules_reach_every_outcome():
    assert G2.decide_energy([2.0, 2.2, 2.1], [5.0, 5.5, 5.2])[0] == REPRODUCED
    assert G2.decide_energy([5.0, 5.5, 5.2], [2.0, 2.2, 2.1])[0] == NOT_REPRODUCED
    assert G2.decide_energy([2.0, 5.0, 3.0], [3.0, 3.0, 3.0])[0] == INCONCLUSIVE
    assert G2.decide_energy_vs_isotropic([0.5, 0.6, 0.55])[0] == REPRODUCED
    assert G2.decide_energy_vs_isotropic([3.0, 4.0, 3.5])[0] == NOT_REPRODUCED
    assert G2.decide_energy_vs_isotropic([0.5, 2.0, 1.0])[0] == INCONCLUSIVE
    pairs = _base_pairs()
    off, prin = planted_energy_ratios(pairs, "off_principal"), planted_energy_ratios(pairs, "principal")
    assert G2.decide_energy(off, prin)[0] == REPRODUCED and G2.decide_energy(prin, off)[0] == NOT_REPRODUCED


def test_curvature_rule_reaches_every_outcome():
    assert G2.decide_curvature([1.0, 1.2, 1.1], [10.0, 12.0, 11.0])[0] == REPRODUCED
    assert G2.decide_curvature([10.0, 12.0, 11.0], [1.0, 1.2, 1.1])[0] == NOT_REPRODUCED
    status, ratio = G2.decide_curvature([1.0, 3.0, 1.0], [2.0, 1.0, 1.0])
    assert status == INCONCLUSIVE and ratio.per_seed == [0.5, 3.0, 1.0]


def test_planted_updates_have_the_asked_norm_and_place():
    rng = np.random.default_rng(1)
    W0 = rng.normal(0, 0.1, (16, 12))
    U, _, Vt = np.linalg.svd(W0)
    for kind in ("principal", "off_principal", "random"):
        d = planted(W0, kind, 0.5, 3, 7)
        assert np.linalg.norm(d) == np.float64(0.5) or abs(np.linalg.norm(d) - 0.5) < 1e-12
    off = planted(W0, "off_principal", 1.0, 3, 7)
    assert np.abs(U[:, :3].T @ off).max() < 1e-12 and np.abs(off @ Vt[:3].T).max() < 1e-12
