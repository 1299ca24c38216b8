"""Gate II (theory/spectral.py): property, tightness and oracle tests.

Bounds are checked in fp32 (the default) with a round-off allowance scaled by the matrix norms:
a float SVD returns every singular value within a few eps * |W|_2, so a bound is read as
``lhs <= rhs + TOL * eps32 * (|W0|_2 + |dW|_2)``. Constructed tightness / violation cases use x64.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import dims, matrices, perturbations
from theory import spectral as S

EPS32 = float(np.finfo(np.float32).eps)
TOL = 64.0  # ULPs of |W|_2 allowed for round-off in a float32 SVD of matrices up to 12 x 12


def _opnorm(A) -> float:
    return float(np.linalg.norm(np.asarray(A, np.float64), 2)) if np.size(A) else 0.0


def _perturbation(W, seed: int, rel: float, kind: int) -> np.ndarray:
    """A perturbation of W: Gaussian (kind 0), rank one (kind 1) or aligned with W's top pair (kind 2)."""
    scale = rel * max(np.linalg.norm(W), 1e-3)
    rng = np.random.default_rng(seed)
    if kind == 0:
        return perturbations(W.shape, seed, scale)
    if kind == 1:
        d = np.outer(rng.standard_normal(W.shape[0]), rng.standard_normal(W.shape[1]))
        return d / np.linalg.norm(d) * scale
    u, _, vt = np.linalg.svd(W)
    return scale * rng.choice([-1.0, 1.0]) * np.outer(u[:, 0], vt[0])


perturbation_args = dict(
    seed=st.integers(0, 2**16), log_rel=st.floats(-6.0, 1.0), kind=st.sampled_from([0, 1, 2])
)


# ----------------------------------------------------------------------------------------------
# bounds hold on generated inputs


@given(W=matrices(), **perturbation_args)
def test_weyl_holds(W, seed, log_rel, kind):
    dW = _perturbation(W, seed, 10.0**log_rel, kind)
    lhs, rhs = S.weyl(W, dW)
    tol = TOL * EPS32 * (_opnorm(W) + _opnorm(dW))
    assert float(lhs) <= float(rhs) + tol


@given(W=matrices(), **perturbation_args)
def test_mirsky_holds(W, seed, log_rel, kind):
    dW = _perturbation(W, seed, 10.0**log_rel, kind)
    lhs, rhs = S.mirsky(W, dW)
    tol = TOL * EPS32 * (_opnorm(W) + _opnorm(dW)) * np.sqrt(min(W.shape))
    assert np.sqrt(float(lhs)) <= np.sqrt(float(rhs)) * (1 + 1e-5) + tol


@given(W=matrices(), k_frac=st.floats(0.0, 1.0), **perturbation_args)
def test_ky_fan_holds_both_forms(W, k_frac, seed, log_rel, kind):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    dW = _perturbation(W, seed, 10.0**log_rel, kind)
    tol = k * TOL * EPS32 * (_opnorm(W) + _opnorm(dW))
    lhs, rhs = S.ky_fan(W, dW, k)
    lhs_s, rhs_s = S.ky_fan_sharp(W, dW, k)
    assert float(lhs) <= float(rhs) + tol
    assert float(lhs_s) <= float(rhs_s) * (1 + 1e-5) + tol
    assert float(rhs_s) <= float(rhs) * (1 + 1e-5) + tol  # the sharp form is sharper


@given(W=matrices(max_dim=8), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), log_rho=st.floats(-4.0, 0.3))
def test_wedin_safe_holds_when_dW_below_gap(W, k_frac, seed, log_rho):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    s = np.linalg.svd(W, compute_uv=False)
    gap = s[k - 1] - (s[k] if k < len(s) else 0.0)
    d = perturbations(W.shape, seed, 1.0)
    dW = d / max(_opnorm(d), 1e-300) * (10.0**log_rho) * max(gap, 1e-300)
    lhs, rhs = S.wedin_safe(W, dW, k)
    lhs_p, rhs_p = S.wedin_paper(W, dW, k)
    assert 0.0 <= float(lhs) <= 1.0 and float(lhs) == float(lhs_p)
    if np.isfinite(float(rhs)):
        nd = float(S.singular_values(dW)[0])
        gap32 = float(S.spectral_gap(W, k))
        assert nd < gap32
        # sines are exact to about eps |W| / (perturbed gap); the perturbed gap is >= gap - |dW|_2
        tol = TOL * EPS32 * (_opnorm(W) + nd) / (gap32 - nd)
        assert float(lhs) <= float(rhs) + tol
        assert float(rhs_p) <= float(rhs)  # the paper form is never looser than the safe form
    else:
        assert 10.0**log_rho >= 0.999 or gap <= 1e-4 * max(s[0], 1e-300)


# ----------------------------------------------------------------------------------------------
# oracles and consistency


@given(W=matrices())
def test_singular_values_match_scipy(W):
    ref = scipy.linalg.svd(W, compute_uv=False)
    got = np.asarray(S.singular_values(W), np.float64)
    assert got.shape == ref.shape
    assert np.all(np.diff(got) <= 0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL * EPS32 * max(ref[0], 1e-300))


@given(W=matrices(min_dim=2, max_dim=8), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), log_rel=st.floats(-3.0, 0.0))
def test_principal_angles_match_scipy(W, k_frac, seed, log_rel):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    W1 = W + perturbations(W.shape, seed, 10.0**log_rel * max(np.linalg.norm(W), 1e-3))
    u0, s0, v0t = scipy.linalg.svd(W)
    u1, s1, v1t = scipy.linalg.svd(W1)

    def rel_gap(s):
        return (s[k - 1] - (s[k] if k < len(s) else 0.0)) / max(s[0], 1e-300)

    got_u, got_v = (np.asarray(a, np.float64) for a in S.principal_angles(W, W1, k))
    assert got_u.shape == got_v.shape == (k,)
    assert np.all((got_u >= 0) & (got_u <= np.pi / 2 + 1e-6))
    sin = float(S.sin_theta_norm(W, W1, k))
    assert abs(sin - max(np.sin(got_u[-1]), np.sin(got_v[-1]))) <= 1e-4
    if min(rel_gap(s0), rel_gap(s1)) < 1e-2:
        return  # top-k subspaces not well determined in fp32: nothing to compare
    ref_u = np.sort(scipy.linalg.subspace_angles(u0[:, :k], u1[:, :k]))
    ref_v = np.sort(scipy.linalg.subspace_angles(v0t[:k].T, v1t[:k].T))
    np.testing.assert_allclose(got_u, ref_u, atol=1e-3)
    np.testing.assert_allclose(got_v, ref_v, atol=1e-3)


@given(W=matrices(), log_c=st.floats(-3.0, 3.0))
def test_nss_and_stable_rank_properties(W, log_c):
    nrm = np.linalg.norm(W)
    nss = float(S.normalized_spectral_shift(W, W))
    sr = float(S.stable_rank(W))
    if nrm == 0:
        assert np.isnan(nss) and np.isnan(sr)
        return
    assert nss == 0.0
    c = 10.0**log_c
    np.testing.assert_allclose(float(S.normalized_spectral_shift(W, c * W)), abs(c - 1), rtol=1e-4, atol=1e-5)
    rank = int(np.linalg.matrix_rank(W))
    assert 1 - 1e-5 <= sr <= max(rank, 1) * (1 + 1e-4)
    share = [float(S.top_k_energy_share(W, k)) for k in range(1, min(W.shape) + 1)]
    assert np.all(np.diff(share) >= -1e-6) and abs(share[-1] - 1) <= 1e-5


# ----------------------------------------------------------------------------------------------
# masks and mask statistics


@given(W=matrices(max_dim=8), alpha=st.floats(0.01, 0.99), k_frac=st.floats(0.0, 1.0))
def test_mask_densities_exact_and_ordered(W, alpha, k_frac):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    count = S.mask_count(W.size, alpha)
    assert count == int(np.floor(alpha * W.size + 0.5))
    pm = np.asarray(S.principal_mask(W, k, alpha))
    lm = np.asarray(S.low_magnitude_mask(W, alpha))
    assert pm.dtype == bool and pm.shape == W.shape and int(pm.sum()) == count
    assert lm.dtype == bool and lm.shape == W.shape and int(lm.sum()) == count
    a = np.abs(np.asarray(W, np.float32))
    if 0 < count < W.size:
        assert a[lm].max() <= a[~lm].min()
        # score from the module's own SVD: with sigma_k = sigma_{k+1} the rank-k reconstruction is not unique
        u, s, v = (np.asarray(x, np.float64) for x in S.top_k_subspaces(W, k))
        score = np.abs((u * s[:k]) @ v.T)
        # kept scores dominate dropped ones up to fp32 round-off of the reconstruction
        assert score[pm].min() >= score[~pm].max() - TOL * EPS32 * max(s[0], 1e-300)
    # determinism
    assert np.array_equal(pm, np.asarray(S.principal_mask(W, k, alpha)))


@given(seed=st.integers(0, 2**16), m=dims(1, 12), n=dims(1, 12), p=st.floats(0, 1), q=st.floats(0, 1))
def test_jaccard_overlap_ratios_properties(seed, m, n, p, q):
    rng = np.random.default_rng(seed)
    A = rng.random((m, n)) < p
    B = rng.random((m, n)) < q
    j = float(S.jaccard(A, B))
    if not (A | B).any():
        assert np.isnan(j)
    else:
        assert 0 <= j <= 1 and j == float(S.jaccard(B, A))
        assert abs(j - (A & B).sum() / (A | B).sum()) <= 1e-6
    if A.any():
        assert float(S.jaccard(A, A)) == 1.0
        assert abs(float(S.overlap(B, A)) - (A & B).sum() / A.sum()) <= 1e-6
    np.testing.assert_allclose(float(S.overlap_random_level(B)), B.mean(), atol=1e-6)
    rr, cr = np.asarray(S.row_ratios(A)), np.asarray(S.col_ratios(A))
    assert rr.shape == (m,) and cr.shape == (n,)
    np.testing.assert_allclose(rr.mean(), A.mean(), atol=1e-6)
    np.testing.assert_allclose(cr.mean(), A.mean(), atol=1e-6)


@given(W=matrices(min_dim=2, max_dim=8), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_energy_fraction_planted_and_complement(W, k_frac, seed):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    rng = np.random.default_rng(seed)
    U, s, V = (np.asarray(a, np.float64) for a in S.top_k_subspaces(W, k))
    planted = U @ rng.standard_normal((k, k)) @ V.T
    assert abs(float(S.principal_energy_fraction(W, planted, k)) - 1.0) <= 1e-4
    G = rng.standard_normal(W.shape)
    comp = G - U @ (U.T @ G)  # left factor orthogonal to U0k: no energy on U0k . V0k^T
    assert float(S.principal_energy_fraction(W, comp, k)) <= 1e-6
    comp_v = G - (G @ V) @ V.T
    assert float(S.principal_energy_fraction(W, comp_v, k)) <= 1e-6
    f = float(S.principal_energy_fraction(W, G, k))
    assert 0 <= f <= 1 + 1e-6


# ----------------------------------------------------------------------------------------------
# tightness: constructed equality cases


def _generic(m, n, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.linspace(5.0, 1.0, min(m, n))
    return (u[:, : len(s)] * s) @ v[:, : len(s)].T


@pytest.mark.parametrize("k", [1, 2, 3])
def test_weyl_mirsky_ky_fan_met_with_equality(k):
    W = _generic(7, 5)
    U, _, V = (np.asarray(a, np.float64) for a in S.top_k_subspaces(W, k))
    c = 0.3
    dW = c * U @ V.T  # raises each of the top k singular values by c, leaves the rest
    for lhs, rhs in (S.weyl(W, dW), S.mirsky(W, dW), S.ky_fan(W, dW, k), S.ky_fan_sharp(W, dW, k)):
        np.testing.assert_allclose(float(lhs), float(rhs), rtol=1e-4)


def test_wedin_safe_met_within_two_percent():
    """W0 = diag(1 + g, 1), dW = e (e1 e2^T + e2 e1^T) with e = g / 100: sin theta = sin(atan(2e/g)/2)
    and the safe bound e / (g - e) agree within 2 % (ratio 0.9899)."""
    with jax.enable_x64(True):
        g, e = 0.5, 0.005
        lhs, rhs = S.wedin_safe(np.diag([1 + g, 1.0]), e * np.array([[0.0, 1.0], [1.0, 0.0]]), 1)
        assert abs(float(lhs) - np.sin(np.arctan(2 * e / g) / 2)) <= 1e-12
        assert 0.98 <= float(lhs) / float(rhs) <= 1.0


def _wedin_grid(dim: int):
    """W0 = diag(1 + g, 1, ...), dW = g [[-x, y], [y, x]] in the top two directions: x closes the gap,
    y rotates. Returns rows (paper ratio, safe ratio, |dW|_2 / gamma_1)."""
    g = 0.25
    W0 = np.diag([1 + g, 1.0, 0.5, 0.25][:dim])
    out = []
    for x in np.linspace(0.0, 0.6, 25):
        for y in np.geomspace(1e-3, 1.0, 13):
            dW = np.zeros((dim, dim))
            dW[:2, :2] = g * np.array([[-x, y], [y, x]])
            lp, rp = S.wedin_paper(W0, dW, 1)
            ls, rs = S.wedin_safe(W0, dW, 1)
            out.append((float(lp / rp), float(ls / rs), np.linalg.norm(dW, 2) / g))
    return np.array(out)


@pytest.mark.parametrize("dim", [2, 3])
def test_wedin_paper_form_violated_while_safe_form_holds(dim):
    """The unperturbed-gap form fails when dW closes the gap and rotates: with x -> 1/2 the two top
    singular values meet, sin theta -> 1 while |dW|_2 / gamma -> 1/2 (ratio -> 2). The safe form holds
    everywhere. Violations can only occur for |dW|_2 < gamma (else rhs >= 1 >= sin theta), and then the
    safe form caps the paper ratio by 1 / (1 - rho) and sin theta <= 1 caps it by 1 / rho: at most 2."""
    with jax.enable_x64(True):
        r = _wedin_grid(dim)
    viol = r[r[:, 0] > 1 + 1e-9]
    assert len(viol) > 0 and viol[:, 0].max() > 1.9
    assert np.all(viol[:, 2] < 1.0)
    assert np.all(r[:, 1] <= 1 + 1e-9)  # safe form holds (ratio 0 where it makes no statement)
    assert r[:, 0].max() <= 2.0 + 1e-9


def test_wedin_gap_zero_gives_inf():
    W = np.diag([2.0, 2.0, 1.0])
    dW = 1e-3 * np.ones((3, 3))
    assert np.isinf(float(S.wedin_paper(W, dW, 1)[1]))
    assert np.isinf(float(S.wedin_safe(W, dW, 1)[1]))
    assert np.isfinite(float(S.wedin_paper(W, dW, 2)[1]))
    assert np.isinf(float(S.wedin_safe(W, 10 * np.eye(3), 2)[1]))  # |dW|_2 >= gamma: no statement


# ----------------------------------------------------------------------------------------------
# Monte Carlo baselines


def test_energy_fraction_random_level_monte_carlo():
    """E[fraction] = k^2/(mn) for isotropic Gaussian dW; the fraction is Beta(k^2/2, (mn-k^2)/2)
    (sd 0.055 here), so the mean of 2000 draws has standard error 0.0012: tolerance 0.006 (5 SE)."""
    m, n, k, draws = 8, 6, 2, 2000
    W0 = _generic(m, n, seed=1)
    dWs = np.random.default_rng(0).standard_normal((draws, m, n)).astype(np.float32)
    f = jax.jit(jax.vmap(lambda d: S.principal_energy_fraction(W0, d, k)))(dWs)
    level = S.principal_energy_random_level(m, n, k)
    assert level == 4 / 48
    assert abs(float(np.mean(f)) - level) <= 0.006


@pytest.mark.parametrize("p,q", [(0.1, 0.1), (0.3, 0.6), (0.05, 0.9)])
def test_jaccard_baseline_matches_bernoulli_simulation(p, q):
    """Independent Bernoulli masks of 10^6 entries: J concentrates within 0.005 of pq/(p+q-pq)."""
    rng = np.random.default_rng(int(100 * p + 1000 * q))
    A = rng.random((1000, 1000)) < p
    B = rng.random((1000, 1000)) < q
    assert abs(float(S.jaccard(A, B)) - float(S.jaccard_random_baseline(p, q))) <= 0.005


def test_masks_break_ties_by_row_major_order():
    W = np.ones((3, 4))
    expect = np.zeros(12, bool)
    expect[:6] = True
    assert int(np.asarray(S.principal_mask(W, 1, 0.5)).sum()) == 6  # reconstruction carries round-off
    assert np.array_equal(np.asarray(S.low_magnitude_mask(W, 0.5)).ravel(), expect)
    import ml_dtypes

    Wb = W.astype(ml_dtypes.bfloat16)  # bf16 input is promoted, not rejected
    assert float(S.singular_values(Wb)[0]) == pytest.approx(np.sqrt(12), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# bad inputs


W22 = np.eye(2)
BAD = [
    (lambda: S.singular_values(np.zeros((0, 3))), "W"),
    (lambda: S.singular_values(np.array([[np.nan, 1.0]])), "W"),
    (lambda: S.singular_values(np.ones(3)), "W"),
    (lambda: S.top_k_subspaces(np.ones((3, 2)), 3), "k"),
    (lambda: S.top_k_subspaces(np.ones((3, 2)), 0), "k"),
    (lambda: S.principal_angles(W22, np.eye(3), 1), "W1"),
    (lambda: S.sin_theta_norm(W22, W22, 1.5), "k"),
    (lambda: S.weyl(W22, np.ones((2, 3))), "dW"),
    (lambda: S.mirsky(W22, np.array([[np.inf, 0.0], [0.0, 0.0]])), "dW"),
    (lambda: S.ky_fan(W22, W22, 3), "k"),
    (lambda: S.wedin_paper(np.ones((2, 2, 2)), W22, 1), "W0"),
    (lambda: S.wedin_safe(W22, W22, 0), "k"),
    (lambda: S.normalized_spectral_shift(W22, np.ones((1, 2))), "W1"),
    (lambda: S.principal_mask(W22, 1, 1.0), "alpha"),
    (lambda: S.principal_mask(W22, 1, 0.0), "alpha"),
    (lambda: S.low_magnitude_mask(W22, -0.1), "alpha"),
    (lambda: S.overlap(W22 > 0, np.zeros((2, 2), bool)), "mask"),
    (lambda: S.overlap(W22 > 0, np.ones((3, 2), bool)), "mask"),
    (lambda: S.principal_energy_fraction(W22, np.ones((2, 2)), 3), "k"),
    (lambda: S.principal_energy_random_level(4, 3, 4), "k"),
    (lambda: S.principal_energy_random_level(0, 3, 1), "m"),
    (lambda: S.jaccard(W22 > 0, np.ones((3, 3), bool)), "B"),
    (lambda: S.jaccard(np.ones(4, bool), np.ones(4, bool)), "A"),
    (lambda: S.jaccard_random_baseline(1.5, 0.2), "p"),
    (lambda: S.jaccard_random_baseline(0.5, -0.2), "q"),
    (lambda: S.row_ratios(np.ones(3)), "mask"),
    (lambda: S.stable_rank(np.zeros((2, 0))), "W"),
    (lambda: S.top_k_energy_share(W22, 3), "k"),
]


@pytest.mark.parametrize("call,name", BAD)
def test_bad_inputs_raise_naming_argument(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


# ----------------------------------------------------------------------------------------------
# gate2_bounds and the functions on precomputed factors / spectra (additions for large matrices)


@given(W=matrices(), k_frac=st.floats(0.0, 1.0), **perturbation_args)
def test_gate2_bounds_equal_the_separate_bounds(W, k_frac, seed, log_rel, kind):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    dW = _perturbation(W, seed, 10.0**log_rel, kind)
    got = S.gate2_bounds(W, dW, k)
    ref = {"weyl": S.weyl(W, dW), "mirsky": S.mirsky(W, dW), "ky_fan": S.ky_fan(W, dW, k),
           "ky_fan_sharp": S.ky_fan_sharp(W, dW, k), "wedin_paper": S.wedin_paper(W, dW, k), "wedin_safe": S.wedin_safe(W, dW, k)}
    assert set(got) == set(ref)
    for name, (lhs, rhs) in ref.items():
        for a, b in ((got[name][0], lhs), (got[name][1], rhs)):
            a, b = float(a), float(b)
            assert (np.isinf(a) and a == b) or a == pytest.approx(b, rel=1e-6, abs=1e-30), name


@given(W=matrices(min_dim=2, max_dim=5), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), log_rel=st.floats(-4.0, 0.0))
def test_factor_metrics_equal_full_svd_metrics(W, k_frac, seed, log_rel):
    k = 1 + int(k_frac * (min(W.shape) - 1))
    dW = perturbations(W.shape, seed, 10.0**log_rel * max(np.linalg.norm(W), 1e-3))
    W1 = W + dW
    U0, s0, V0 = S.top_k_subspaces(W, k)
    U1, s1, V1 = S.top_k_subspaces(W1, k)
    for got, ref in zip((S.principal_angles_from_factors(U0, U1), S.principal_angles_from_factors(V0, V1)),
                        S.principal_angles(W, W1, k)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-6)
    e_got, e_ref = float(S.principal_energy_from_factors(U0, V0, dW)), float(S.principal_energy_fraction(W, dW, k))
    assert e_got == pytest.approx(e_ref, rel=1e-4, abs=1e-6)
    assert float(S.nss_from_singular_values(s0, s1)) == pytest.approx(float(S.normalized_spectral_shift(W, W1)), rel=1e-6, abs=1e-30, nan_ok=True)
    if np.linalg.norm(W) > 0:
        assert float(S.stable_rank_from_singular_values(s0)) == pytest.approx(float(S.stable_rank(W)), rel=1e-6)
    assert float(S.spectral_gap_from_singular_values(s0, k)) == pytest.approx(float(S.spectral_gap(W, k)), rel=1e-6, abs=1e-30)
    # principal mask: the same count; entries may differ only where the score ties the threshold within round-off
    got = np.asarray(S.principal_mask_from_factors(U0, s0[:k], V0, 0.5))
    ref = np.asarray(S.principal_mask(W, k, 0.5))
    assert got.sum() == ref.sum() == S.mask_count(W.size, 0.5)
    score = np.abs((np.asarray(U0, np.float64) * np.asarray(s0[:k], np.float64)) @ np.asarray(V0, np.float64).T)
    threshold = np.sort(score.reshape(-1))[::-1][S.mask_count(W.size, 0.5) - 1]
    assert np.all(np.abs(score[got != ref] - threshold) <= 1e-5 * max(score.max(), 1e-300))


def test_factor_functions_refuse_bad_shapes():
    U = np.eye(4)[:, :2]
    with pytest.raises(ValueError, match="A0_k"):
        S.principal_angles_from_factors(U, np.eye(5)[:, :2])
    with pytest.raises(ValueError, match="U_k"):
        S.principal_mask_from_factors(U, np.ones(3), np.eye(3)[:, :2], 0.5)
    with pytest.raises(ValueError, match="dW"):
        S.principal_energy_from_factors(U, np.eye(3)[:, :2], np.ones((3, 3)))
    with pytest.raises(ValueError, match="s0"):
        S.nss_from_singular_values(np.array([1.0, -1.0]), np.ones(2))
