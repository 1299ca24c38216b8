"""Gate I (theory/kl.py): exact KL, k1/k2/k3 estimators, tilting lemma, Fisher quadratic, Prop 3.1 / 3.2,
Schur-complement layer bound and clip-only bound. Property tests, oracles (scipy, brute force,
finite differences, jax.hessian, dense Fisher) and tightness cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr, softmax

from theory import kl as K

# ----------------------------------------------------------------------------------------------
# strategies


@st.composite
def logit_pairs(draw, max_vocab: int = 32, allow_zero: bool = True):
    """Two logit vectors over the same vocabulary; p may have zero-probability (-inf) entries."""
    v = draw(st.sampled_from([x for x in (1, 2, 3, 5, 8, 16, 32) if x <= max_vocab]))  # few shapes: eager compiles
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.01, 0.3, 1.0, 3.0, 8.0]))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(v) * scale
    b = rng.standard_normal(v) * scale
    if allow_zero and v > 1 and draw(st.booleans()):
        a[rng.random(v) < 0.3] = -np.inf
        if np.all(np.isinf(a)):
            a[0] = 0.0
    return a.astype(np.float32), b.astype(np.float32)


@st.composite
def linear_softmax(draw):
    """A tiny linear-softmax model z_n = W x_n + b: returns (params, X, logits_fn)."""
    v = draw(st.sampled_from([2, 3, 5]))
    d = draw(st.sampled_from([1, 3]))
    n = draw(st.sampled_from([1, 4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    params = {"W": rng.standard_normal((v, d)), "b": rng.standard_normal(v)}
    X = rng.standard_normal((n, d))
    return params, X, rng


def _logits_fn(X):
    return lambda p: jnp.asarray(X) @ p["W"].T + p["b"]


def _dense_fisher(params, X):
    """Dense sum_n J_n^T (diag p_n - p_n p_n^T) J_n in numpy fp64 (reference), with the flat order of
    ``jax.flatten_util.ravel_pytree`` ({"W", "b"}: b first, then W row-major). z_n = W x_n + b gives
    dz_n / db = I and dz_n / dW[v, j] = e_v x_n[j]."""
    W, b = np.asarray(params["W"], np.float64), np.asarray(params["b"], np.float64)
    V, d = W.shape
    z = X @ W.T + b
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    F = np.zeros((V + V * d, V + V * d))
    for n in range(X.shape[0]):
        J = np.concatenate([np.eye(V), np.kron(np.eye(V), X[n][None, :])], axis=1)
        F += J.T @ (np.diag(p[n]) - np.outer(p[n], p[n])) @ J
    unravel = lambda th: {"W": th[V:].reshape(V, d), "b": th[:V]}
    return F, unravel


# ----------------------------------------------------------------------------------------------
# exact KL


@given(logit_pairs())
def test_kl_categorical_matches_scipy_rel_entr(pair):
    a, b = pair
    lp, lq = K.log_softmax32(a), K.log_softmax32(b)
    p = softmax(a.astype(np.float64))
    q = softmax(b.astype(np.float64))
    expected = rel_entr(p, q).sum()
    got = float(K.kl_categorical(lp, lq))
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-3, abs=2e-6)


@given(logit_pairs())
def test_kl_nonnegative_and_zero_iff_equal(pair):
    a, b = pair
    lp, lq = K.log_softmax32(a), K.log_softmax32(b)
    assert float(K.kl_categorical(lp, lq)) >= 0.0
    assert float(K.kl_categorical(lp, lp)) == 0.0
    p, q = np.exp(np.asarray(lp, np.float64)), np.exp(np.asarray(lq, np.float64))
    tv = 0.5 * np.abs(p - q).sum()
    if tv > 1e-2:  # Pinsker: KL >= 2 TV^2 > 0
        assert float(K.kl_categorical(lp, lq)) >= 0.9 * 2 * tv**2


@settings(max_examples=12)
@given(st.sampled_from([1, 3]), st.sampled_from([1, 5]), st.sampled_from([2, 7]), st.integers(0, 2**31 - 1))
def test_kl_per_sequence_and_token_mean_match_loops(B, T, V, seed):
    rng = np.random.default_rng(seed)
    lp = K.log_softmax32(rng.standard_normal((B, T, V)))
    lq = K.log_softmax32(rng.standard_normal((B, T, V)))
    mask = rng.random((B, T)) < 0.6
    per = np.asarray(K.kl_categorical(lp, lq))
    seq = np.asarray(K.kl_per_sequence(lp, lq, mask))
    np.testing.assert_allclose(seq, (per * mask).sum(-1), rtol=1e-5, atol=1e-6)
    mean = float(K.kl_token_mean(lp, lq, mask))
    ref = (per * mask).sum() / max(mask.sum(), 1)
    assert mean == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_masked_positions_with_infinite_kl_do_not_leak():
    lp = jnp.log(jnp.array([[[0.5, 0.5], [0.5, 0.5]]]))
    lq = jnp.log(jnp.array([[[0.5, 0.5], [1.0, 0.0]]]))  # position 1: KL = inf
    assert float(K.kl_per_sequence(lp, lq, jnp.array([[True, False]]))[0]) == 0.0
    assert np.isinf(float(K.kl_per_sequence(lp, lq, jnp.array([[True, True]]))[0]))


# ----------------------------------------------------------------------------------------------
# estimators


@given(st.floats(-200, 200, allow_nan=False, width=32), st.floats(-200, 200, allow_nan=False, width=32))
def test_k3_nonnegative_pointwise_and_k2_nonnegative(a, b):
    lp, lq = jnp.float32(a), jnp.float32(b)
    k3 = float(K.kl_k3(lp, lq))
    assert np.isfinite(k3) and k3 >= 0.0
    assert float(K.kl_k2(lp, lq)) >= 0.0
    assert float(K.kl_k1(lp, lq)) == pytest.approx(a - b, rel=1e-6, abs=1e-4)


@settings(max_examples=10)
@given(logit_pairs(max_vocab=16, allow_zero=False))
def test_k1_k3_monte_carlo_converge_to_exact_kl(pair):
    """Unbiasedness E_p[k1] = E_p[k3] = KL(p || q): exactly as a sum over the vocabulary (rel 1e-3), and as a
    sample mean of N = 100k draws from a fixed key within 5 exact standard errors sqrt(Var_p[k] / N) + 1e-4
    (the exact variance, since rare tokens with huge k3 may never be drawn)."""
    a, b = pair
    lp, lq = K.log_softmax32(a), K.log_softmax32(b)
    exact = float(K.kl_categorical(lp, lq))
    p = np.exp(np.asarray(lp, np.float64))
    y = jax.random.categorical(jax.random.key(0), lp, shape=(100_000,))
    for est in (K.kl_k1, K.kl_k3):
        k_v = np.asarray(est(lp, lq), np.float64)
        assert (p * k_v).sum() == pytest.approx(exact, rel=1e-3, abs=1e-5), est.__name__
        sd = np.sqrt(max((p * (k_v - (p * k_v).sum()) ** 2).sum(), 0.0))
        vals = np.asarray(est(lp[y], lq[y]), np.float64)
        assert abs(vals.mean() - exact) <= 5 * sd / np.sqrt(vals.size) + 1e-4, est.__name__


def test_k3_clamp_keeps_values_finite():
    assert np.isfinite(float(K.kl_k3(jnp.float32(-1000.0), jnp.float32(0.0))))
    assert float(K.kl_k3(jnp.float32(-1000.0), jnp.float32(0.0), clamp=5.0)) == pytest.approx(np.expm1(5.0) - 5.0, rel=1e-6)
    assert float(K.kl_estimate(jnp.float32(0.0), jnp.float32(0.3), "k2")) == pytest.approx(0.045)


# ----------------------------------------------------------------------------------------------
# tilting lemma


@st.composite
def tilt_cases(draw):
    a, _ = draw(logit_pairs(max_vocab=24, allow_zero=False))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["01", "pm1", "real"]))
    v = a.size
    r = {"01": rng.integers(0, 2, v), "pm1": rng.choice([-1, 1], v), "real": rng.standard_normal(v)}[kind]
    beta = draw(st.sampled_from([0.01, 0.05, 0.3, 1.0, 3.0, 10.0]))
    return a, r.astype(np.float32), beta


@given(tilt_cases())
def test_tilted_policy_matches_brute_force(case):
    a, r, beta = case
    q = softmax(a.astype(np.float64))
    w = q * np.exp((r.astype(np.float64) - r.max()) / beta)
    expected = w / w.sum()
    got = np.exp(np.asarray(K.tilted_policy(K.log_softmax32(a), r, beta), np.float64))
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)


@given(tilt_cases())
def test_tilted_policy_is_the_argmax_of_the_regularised_objective(case):
    """Tilting lemma: E_pi[R] - beta KL(pi || q) at q_tilde is >= its value at random competitors."""
    a, r, beta = case
    lq = K.log_softmax32(a)
    lt = K.tilted_policy(lq, r, beta)
    obj = lambda lpi: float(jnp.sum(jnp.exp(lpi) * r) - beta * K.kl_categorical(lpi, lq))
    best = obj(lt)
    rng = np.random.default_rng(0)
    for _ in range(5):
        comp = K.log_softmax32(np.asarray(lt) + rng.standard_normal(a.size).astype(np.float32) * 0.5)
        assert obj(comp) <= best + 1e-4 * (1 + abs(best))


@given(tilt_cases())
def test_kl_tilted_ratio_to_variance_approx_tends_to_one(case):
    """KL(q_tilde || q) / (Var_q(R) / 2 beta^2) -> 1 as beta grows; |ratio - 1| = O(1 / beta). fp64."""
    a, r, _ = case
    with jax.enable_x64(True):
        lq = K.log_softmax32(a.astype(np.float64))
        r64 = r.astype(np.float64)
        var2 = float(K.kl_tilted_small_step_approx(lq, r64, 1.0)) * 2
        if var2 < 1e-8:
            return
        errs = []
        for beta in (10.0, 100.0, 1000.0):
            ratio = float(K.kl_tilted(lq, r64, beta)) / float(K.kl_tilted_small_step_approx(lq, r64, beta))
            errs.append(abs(ratio - 1))
        assert errs[2] <= errs[0] + 1e-9
        assert errs[2] < 1e-2


@given(tilt_cases(), st.floats(0.01, 1.0))
def test_prop31_partial_tilt_step_is_leashed(case, t):
    """pi_t proportional to q^(1-t) q_tilde^t is the tilt with beta / t and KL(pi_t || q) is increasing in t,
    so KL(pi_t || q) <= KL(q_tilde || q) = prop31_bound (equality at t = 1)."""
    a, r, beta = case
    lq = K.log_softmax32(a)
    lt = K.tilted_policy(lq, r, beta)
    lpi_t = K.log_softmax32((1 - t) * np.asarray(lq) + t * np.asarray(lt))
    lhs = float(K.kl_categorical(lpi_t, lq))
    rhs = float(K.prop31_bound(K.kl_tilted(lq, r, beta)))
    assert lhs <= rhs * (1 + 1e-4) + 1e-6
    lpi_1 = K.log_softmax32(np.asarray(lt))
    assert float(K.kl_categorical(lpi_1, lq)) == pytest.approx(rhs, rel=1e-4, abs=1e-6)  # tight at t = 1


# ----------------------------------------------------------------------------------------------
# Fisher quadratic


@given(logit_pairs(max_vocab=12, allow_zero=False))
def test_fisher_logits_equals_finite_difference_limit(pair):
    """KL(p_{z + t dz} || p_z) / t^2 -> 1/2 dz^T (diag p - pp^T) dz as t -> 0 (fp64; error O(t))."""
    z, dz = pair
    with jax.enable_x64(True):
        z, dz = z.astype(np.float64), dz.astype(np.float64)
        dz = dz / max(np.linalg.norm(dz), 1e-300)  # unit step direction, so t sets the step size
        lp = K.log_softmax32(z)
        quad = float(K.fisher_quadratic_logits(lp, dz))
        if quad < 1e-6:  # (almost) a constant shift: the quadratic vanishes, the ratio is ill-posed
            return
        errs = []
        for t in (1e-1, 1e-2, 1e-3):
            kl = float(K.kl_categorical(K.log_softmax32(z + t * dz), lp))
            errs.append(abs(kl / t**2 - quad) / quad)
        assert errs[2] < 2e-2
        assert errs[2] <= errs[0] + 1e-9


_kl_hessian = jax.jit(jax.hessian(lambda d, z, lp: K.kl_categorical(K.log_softmax32(z + d), lp)))


@settings(max_examples=10)
@given(logit_pairs(max_vocab=8, allow_zero=False))
def test_fisher_logits_matches_jax_hessian_of_kl(pair):
    """Oracle: the Hessian of dz -> KL(p_{z+dz} || p_z) at dz = 0 is diag p - pp^T."""
    z, dz = pair
    lp = K.log_softmax32(z)
    H = _kl_hessian(jnp.zeros_like(z), z, lp)
    p = np.exp(np.asarray(lp, np.float64))
    np.testing.assert_allclose(np.asarray(H), np.diag(p) - np.outer(p, p), atol=2e-5)
    quad = float(K.fisher_quadratic_logits(lp, dz))
    assert quad == pytest.approx(0.5 * float(dz @ np.asarray(H) @ dz), rel=1e-3, abs=1e-5)


@settings(max_examples=20)
@given(linear_softmax(), st.sampled_from(["sum", "mean"]))
def test_fisher_params_matches_dense_fisher(model, reduce):
    params, X, rng = model
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    D = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), params)
    F, _ = _dense_fisher(params, X)
    d = np.concatenate([np.asarray(D["b"], np.float64), np.asarray(D["W"], np.float64).ravel()])
    ref = 0.5 * float(d @ F @ d) / (1 if reduce == "sum" else X.shape[0])
    got = float(K.fisher_quadratic_params(_logits_fn(X), params, D, reduce=reduce))
    assert got == pytest.approx(ref, rel=1e-4, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# Prop 3.2 and the Schur layer bound (fp64: these are exact linear-algebra statements)


@settings(max_examples=20)
@given(linear_softmax(), st.booleans())
def test_prop32_euclid_bound_with_mu_min_on_range(model, use_eigvec):
    """|D|_2 <= sqrt(2 delta / mu) for D in range(F), mu the smallest eigenvalue of F on its range;
    met with equality by the eigenvector of mu, and violated there by any larger mu."""
    params, X, rng = model
    with jax.enable_x64(True):
        F, unravel = _dense_fisher(params, X)
        lam, U = np.linalg.eigh(F)
        keep = lam > 1e-9 * lam[-1]
        if keep.sum() == 0:
            return
        Ur = U[:, keep]
        mu = float(K.mu_min(F, range_rtol=1e-9))
        assert mu == pytest.approx(lam[keep][0], rel=1e-9)
        d = Ur[:, 0] if use_eigvec else Ur @ rng.standard_normal(Ur.shape[1])
        delta = float(K.fisher_quadratic_params(_logits_fn(X), params, unravel(jnp.asarray(d))))
        bound = float(K.prop32_euclid_bound(delta, mu))
        norm = float(np.linalg.norm(d))
        assert norm <= bound * (1 + 1e-9)
        assert float(K.prop32_fisher_norm_bound(delta)) == pytest.approx(np.sqrt(d @ F @ d), rel=1e-9)
        if use_eigvec:
            assert norm == pytest.approx(bound, rel=1e-6)  # tight
            if keep.sum() > 1 and lam[keep][1] > mu * (1 + 1e-6):
                assert norm > float(K.prop32_euclid_bound(delta, lam[keep][1]))


@st.composite
def psd_and_block(draw):
    n = draw(st.sampled_from([2, 3, 5, 8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    rank = draw(st.integers(1, n))
    A = rng.standard_normal((n, rank)) * 10.0 ** draw(st.integers(-2, 2))
    F = A @ A.T
    k = draw(st.integers(1, n - 1))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return F, idx, rng


@settings(max_examples=12)
@given(psd_and_block())
def test_schur_complement_is_the_minimum_over_rest_completions(case):
    """1/2 w^T S w = min_x 1/2 [w; x]^T F [w; x] <= the value at any completion x."""
    F, idx, rng = case
    with jax.enable_x64(True):
        n = F.shape[0]
        rest = np.setdiff1d(np.arange(n), idx)
        S = np.asarray(K.schur_complement(F, idx))
        w = rng.standard_normal(idx.size)
        x_star = -np.linalg.pinv(F[np.ix_(rest, rest)]) @ F[np.ix_(rest, idx)] @ w
        quad = lambda x: 0.5 * np.concatenate([w, x]) @ F[np.ix_(np.r_[idx, rest], np.r_[idx, rest])] @ np.concatenate([w, x])
        delta_W = 0.5 * w @ S @ w
        scale = 1e-9 * (np.abs(F).max() * (w @ w) + 1e-300)
        assert delta_W == pytest.approx(quad(x_star), rel=1e-6, abs=scale)  # the minimum is attained
        for _ in range(5):
            assert delta_W <= quad(x_star + rng.standard_normal(rest.size)) + scale
        assert float(K.mu_min(S)) >= -1e-8 * np.abs(F).max()  # S is PSD


@given(psd_and_block())
def test_layer_schur_bound_holds_and_is_tight(case):
    F, idx, rng = case
    with jax.enable_x64(True):
        F = F + 0.1 * np.abs(F).max() * np.eye(F.shape[0])  # F > 0 so mu_W > 0
        S = np.asarray(K.schur_complement(F, idx))
        mu_W = float(K.mu_min(S))
        lam, U = np.linalg.eigh(S)
        for w in (rng.standard_normal(idx.size), U[:, 0]):
            delta_W = 0.5 * w @ S @ w
            assert np.linalg.norm(w) <= float(K.layer_schur_bound(delta_W, mu_W)) * (1 + 1e-9)
        assert np.linalg.norm(U[:, 0]) == pytest.approx(float(K.layer_schur_bound(0.5 * U[:, 0] @ S @ U[:, 0], mu_W)), rel=1e-6)


def test_schur_complement_ridge_and_full_block():
    F = np.array([[2.0, 1.0], [1.0, 0.0]])
    assert float(K.schur_complement(F, [0])[0, 0]) == pytest.approx(2.0)  # singular F_rr: pinv drops it
    assert float(K.schur_complement(F, [0], ridge=1.0)[0, 0]) == pytest.approx(1.0)
    np.testing.assert_allclose(K.schur_complement(F, [0, 1]), F)


# ----------------------------------------------------------------------------------------------
# clip-only bound


@given(
    st.floats(0.01, 0.9),
    st.one_of(st.none(), st.floats(0.01, 2.0)),
    st.integers(1, 50),
    st.integers(0, 2**31 - 1),
)
def test_clip_only_per_token_bound(eps, eps_high, T, seed):
    hi = eps if eps_high is None else eps_high
    rng = np.random.default_rng(seed)
    ratio = np.exp(rng.standard_normal(T) * 2.0)
    clipped = np.clip(ratio, 1 - eps, 1 + hi)
    per = K.clip_only_per_token_bound(eps, eps_high)
    assert np.all(np.abs(np.log(clipped)) <= per * (1 + 1e-12))
    assert np.abs(np.log(clipped)).sum() <= float(K.clip_only_bound(T, eps, eps_high)) * (1 + 1e-6)
    # tight: a ratio saturated at the binding side meets the per-token bound
    binding = 1 - eps if -np.log1p(-eps) >= np.log1p(hi) else 1 + hi
    assert abs(np.log(binding)) == pytest.approx(per, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# jit, bad inputs


def test_jit_equals_eager():
    rng = np.random.default_rng(1)
    lp = K.log_softmax32(rng.standard_normal((3, 5)))
    lq = K.log_softmax32(rng.standard_normal((3, 5)))
    r = rng.integers(0, 2, 5).astype(np.float32)
    np.testing.assert_allclose(jax.jit(K.kl_categorical)(lp, lq), K.kl_categorical(lp, lq), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(K.kl_k3)(lp, lq), K.kl_k3(lp, lq), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(K.kl_tilted)(lq, r, 0.5), K.kl_tilted(lq, r, 0.5), rtol=1e-5)
    np.testing.assert_allclose(
        jax.jit(K.fisher_quadratic_logits)(lp, lq), K.fisher_quadratic_logits(lp, lq), rtol=1e-6
    )


_lp = np.log(np.full(3, 1 / 3, np.float32))
_BAD = [
    ("logits", lambda: K.log_softmax32(np.zeros((2, 0)))),
    ("logits", lambda: K.log_softmax32(np.array([0.0, np.nan]))),
    ("logp_p", lambda: K.kl_categorical(np.array([np.nan, 0.0, 0.0]), _lp)),
    ("logp_q", lambda: K.kl_categorical(_lp, np.zeros((0,)))),
    ("logp_q", lambda: K.kl_categorical(_lp, _lp[:2])),
    ("mask_BT", lambda: K.kl_per_sequence(_lp[None, None], _lp[None, None], np.ones((1, 2), bool))),
    ("logp_p", lambda: K.kl_k1(np.array([np.nan]), np.array([0.0]))),
    ("clamp", lambda: K.kl_k3(_lp, _lp, clamp=0.0)),
    ("kind", lambda: K.kl_estimate(_lp, _lp, "k4")),
    ("beta", lambda: K.tilted_policy(_lp, np.ones(3), 0.0)),
    ("beta", lambda: K.kl_tilted(_lp, np.ones(3), -1.0)),
    ("reward", lambda: K.kl_tilted_small_step_approx(_lp, np.array([1.0, np.nan, 0.0]), 1.0)),
    ("reward", lambda: K.tilted_policy(_lp, np.ones(2), 1.0)),
    ("delta_logits", lambda: K.fisher_quadratic_logits(_lp, np.ones(2))),
    ("direction", lambda: K.fisher_quadratic_params(lambda p: p, np.ones(3), [np.ones(3)])),
    ("reduce", lambda: K.fisher_quadratic_params(lambda p: p, np.ones(3), np.ones(3), reduce="max")),
    ("kl_tilted_value", lambda: K.prop31_bound(-1.0)),
    ("K", lambda: K.prop32_fisher_norm_bound(np.nan)),
    ("mu", lambda: K.prop32_euclid_bound(1.0, 0.0)),
    ("mu_W", lambda: K.layer_schur_bound(1.0, -2.0)),
    ("delta_W", lambda: K.layer_schur_bound(-1.0, 2.0)),
    ("F", lambda: K.schur_complement(np.ones((2, 3)), [0])),
    ("idx", lambda: K.schur_complement(np.eye(3), [5])),
    ("S", lambda: K.mu_min(np.array([[np.nan]]))),
    ("epsilon", lambda: K.clip_only_bound(10, 1.0)),
    ("epsilon", lambda: K.clip_only_bound(10, 0.0)),
    ("epsilon_high", lambda: K.clip_only_bound(10, 0.2, -0.1)),
    ("expected_len", lambda: K.clip_only_bound(-1, 0.2)),
]


@pytest.mark.parametrize("name,call", _BAD, ids=[f"{i}-{n}" for i, (n, _) in enumerate(_BAD)])
def test_bad_input_raises_value_error_naming_argument(name, call):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()
