"""theory.curvature: Hessian/Fisher-vector products, Lanczos, Rayleigh quotients, dense Fisher, Schur complements.

Oracles: jax.hessian and jax.jacfwd on tiny problems, numpy.linalg.eigvalsh, second differences of the
loss, the inverse of the block of F^{-1}. Problems come from a small pool of shapes so compiled
kernels are reused across hypothesis examples (the whole file runs in well under a minute on 2 CPUs).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jax.flatten_util import ravel_pytree

from theory.curvature import (
    dense_fisher,
    dense_matrix,
    directional_curvature,
    fisher_vp,
    hvp,
    lanczos_top_eigs,
    layer_indices,
    rayleigh_quotient,
    schur_complement,
    schur_min_eig,
)

SHAPES = [(2, 3, 4), (3, 2, 5), (4, 3, 3)]  # (positions N, features d, classes V)
HIDDEN = 3
seeds = st.integers(0, 2**20)
shapes = st.sampled_from(SHAPES)
kinds = st.sampled_from(["softmax", "mlp"])


def _logits(kind, p, X):
    if kind == "softmax":
        return X @ p["W"] + p["b"]
    return jnp.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def _problem(seed, shape, kind="softmax", dtype=jnp.float32):
    """(params, X, logits_fn) of a softmax regression or a one-hidden-layer tanh MLP."""
    n, d, v = shape
    ks = jax.random.split(jax.random.key(seed), 5)
    X = jax.random.normal(ks[0], (n, d), dtype)
    if kind == "softmax":
        params = {"W": jax.random.normal(ks[1], (d, v), dtype), "b": 0.3 * jax.random.normal(ks[2], (v,), dtype)}
    else:
        params = {"W1": jax.random.normal(ks[1], (d, HIDDEN), dtype), "b1": 0.3 * jax.random.normal(ks[2], (HIDDEN,), dtype),
                  "W2": jax.random.normal(ks[3], (HIDDEN, v), dtype), "b2": 0.3 * jax.random.normal(ks[4], (v,), dtype)}
    return params, X, partial(_logits, kind, X=X)


def _random_like(params, seed):
    leaves, tree = jax.tree.flatten(params)
    ks = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(ks, leaves)])


def _ce(kind, p, X):
    """Cross-entropy on fixed labels plus a non-quadratic term: a loss with a genuinely indefinite Hessian."""
    z = _logits(kind, p, X)
    y = jnp.arange(X.shape[0]) % z.shape[-1]
    nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1))
    return nll + 0.1 * sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(p))


@partial(jax.jit, static_argnums=0)
def _hessian_oracle(kind, params, X):
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda f: _ce(kind, unravel(f), X))(flat)


@partial(jax.jit, static_argnums=0)
def _hvp_jit(kind, params, X, v):
    return hvp(lambda p: _ce(kind, p, X), params, v)


@partial(jax.jit, static_argnums=0)
def _fisher_jit(kind, params, X, mask):
    return dense_fisher(lambda p: _logits(kind, p, X), params, mask)


@partial(jax.jit, static_argnums=0)
def _fisher_oracle(kind, params, X, mask):
    """J^T (diag p - p p^T) J averaged over unmasked rows, J from jax.jacfwd (an independent construction)."""
    flat, unravel = ravel_pytree(params)
    z = _logits(kind, params, X)
    J = jax.jacfwd(lambda f: _logits(kind, unravel(f), X))(flat)  # (N, V, P)
    p = jax.nn.softmax(z, axis=-1)
    H = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
    return jnp.einsum("n,nvp,nvw,nwq->pq", mask, J, H, J) / jnp.maximum(jnp.sum(mask), 1.0)


@partial(jax.jit, static_argnums=0)
def _kl_hessian(kind, params, X):
    """Hessian at theta0 of the token-mean KL(p_theta0 || p_theta) = expected NLL under the model's own samples + const."""
    flat0, unravel = ravel_pytree(params)
    p0 = jax.nn.softmax(_logits(kind, params, X), axis=-1)

    def kl(flat):
        lq = jax.nn.log_softmax(_logits(kind, unravel(flat), X), axis=-1)
        return jnp.mean(jnp.sum(p0 * (jnp.log(p0) - lq), axis=-1))

    return jax.hessian(kl)(flat0)


def _close(got, want, rtol=1e-4, atol_rel=1e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_rel * max(1.0, np.abs(want).max()))


# ---------------------------------------------------------------------------------------------- hvp


def _quadratic(A, c, p):
    x = ravel_pytree(p)[0]
    return 0.5 * x @ A @ x + c @ x


@jax.jit
def _quadratic_check(A, c, params, v):
    """(hvp of the quadratic, jax.hessian of it) for 1/2 x^T A x + c^T x over a pytree x."""
    flat, unravel = ravel_pytree(params)
    return ravel_pytree(hvp(partial(_quadratic, A, c), params, v))[0], jax.hessian(lambda f: _quadratic(A, c, unravel(f)))(flat)


@given(seeds, st.sampled_from([(1, 1), (3, 2), (6, 3)]))
def test_hvp_of_a_random_quadratic_is_the_matrix_times_v(seed, dims):
    m, r = dims
    rng = np.random.default_rng(seed)
    params = {"a": jnp.asarray(rng.standard_normal(m), jnp.float32), "b": jnp.asarray(rng.standard_normal((r, 2)), jnp.float32)}
    P = ravel_pytree(params)[0].size
    B = rng.standard_normal((P, P))
    A = jnp.asarray(B + B.T, jnp.float32)  # symmetric, indefinite
    c = jnp.asarray(rng.standard_normal(P), jnp.float32)
    v = _random_like(params, seed + 1)
    got, H = _quadratic_check(A, c, params, v)
    _close(got, A @ ravel_pytree(v)[0])
    _close(H, A)  # the oracle agrees on this case too


@given(seeds, shapes, kinds)
def test_hvp_matches_jax_hessian(seed, shape, kind):
    params, X, _ = _problem(seed, shape, kind)
    v = _random_like(params, seed + 1)
    H = _hessian_oracle(kind, params, X)
    _close(ravel_pytree(_hvp_jit(kind, params, X, v))[0], H @ ravel_pytree(v)[0], rtol=1e-4, atol_rel=1e-4)


# ----------------------------------------------------------------------------------------- Fisher


@given(seeds, shapes, kinds, st.sampled_from(["none", "random", "all"]))
def test_fisher_vp_matches_dense_jacobian_oracle(seed, shape, kind, mask_kind):
    params, X, f = _problem(seed, shape, kind)
    n = shape[0]
    if mask_kind == "random":
        mask = (np.random.default_rng(seed).uniform(size=n) < 0.5).astype(np.float32)
        mask[seed % n] = 1.0
    else:
        mask = np.ones(n, np.float32)
    want = _fisher_oracle(kind, params, X, jnp.asarray(mask))
    got = _fisher_jit(kind, params, X, None if mask_kind == "none" else jnp.asarray(mask))
    _close(got, want)
    v = _random_like(params, seed + 2)  # the matrix-free product agrees with the dense matrix
    fv = ravel_pytree(fisher_vp(f, params, v, None if mask_kind == "none" else mask))[0]
    _close(fv, np.asarray(want, np.float64) @ np.asarray(ravel_pytree(v)[0], np.float64), atol_rel=1e-4)


@given(seeds, shapes, kinds)
def test_fisher_is_psd_and_equals_hessian_of_kl_under_own_samples(seed, shape, kind):
    params, X, _ = _problem(seed, shape, kind)
    F = np.asarray(_fisher_jit(kind, params, X, None), np.float64)
    lam = np.linalg.eigvalsh(F)
    assert lam.min() >= -1e-5 * max(1.0, lam.max())  # PSD up to float32 round-off
    v = np.random.default_rng(seed).standard_normal(F.shape[0])
    assert v @ F @ v >= -1e-5 * max(1.0, lam.max()) * (v @ v)
    _close(F, _kl_hessian(kind, params, X), rtol=1e-3, atol_rel=1e-4)


def test_fisher_with_an_all_zero_mask_is_zero():
    params, X, f = _problem(0, SHAPES[0])
    F = dense_fisher(f, params, jnp.zeros(SHAPES[0][0]))
    assert float(jnp.max(jnp.abs(F))) == 0.0


# ---------------------------------------------------------------------------------------- Lanczos


@given(seeds, st.integers(2, 12), st.sampled_from(["distinct", "repeated", "indefinite", "rank_deficient"]))
def test_lanczos_top_eigenvalues_match_eigvalsh(seed, dim, spectrum):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    if spectrum == "distinct":
        lam = rng.uniform(0.1, 5.0, dim)
    elif spectrum == "repeated":
        lam = np.repeat([3.0, 1.0], [dim // 2 + 1, dim - dim // 2 - 1])
    elif spectrum == "indefinite":
        lam = rng.uniform(-5.0, 5.0, dim)
    else:
        lam = np.concatenate([rng.uniform(1.0, 4.0, dim // 2), np.zeros(dim - dim // 2)])
    A = jnp.asarray((Q * lam) @ Q.T, jnp.float32)
    k = min(3, dim)
    got, vecs = lanczos_top_eigs(lambda v: A @ v, dim, k, dim, jax.random.key(seed))
    want = np.sort(np.linalg.eigvalsh(np.asarray(A, np.float64)))[::-1]
    # stated tolerance: 1e-4 relative to the operator norm (float32 matvecs, float64 recurrences)
    np.testing.assert_allclose(got, want[:k], rtol=0, atol=1e-4 * np.abs(want).max())  # repeated ones with multiplicity
    v0 = np.asarray(vecs[0], np.float64)
    assert float(v0 @ np.asarray(A, np.float64) @ v0) / float(v0 @ v0) == pytest.approx(want[0], abs=1e-4 * np.abs(want).max())
    again, _ = lanczos_top_eigs(lambda v: A @ v, dim, k, dim, jax.random.key(seed))
    assert np.array_equal(got, again)  # deterministic for a key


@given(seeds, shapes, st.integers(1, 4))
def test_lanczos_on_a_pytree_gives_ritz_values_inside_the_spectrum(seed, shape, iters):
    params, X, f = _problem(seed, shape)
    F = np.asarray(_fisher_jit("softmax", params, X, None), np.float64)
    lam = np.linalg.eigvalsh(F)
    got, vecs = lanczos_top_eigs(lambda v: fisher_vp(f, params, v), params, 1, iters, jax.random.key(seed))
    tol = 1e-4 * max(lam.max(), 1e-12)
    assert lam.min() - tol <= got[0] <= lam.max() + tol  # Cauchy interlacing: Ritz values lie in the spectrum
    assert jax.tree.structure(vecs[0]) == jax.tree.structure(params)


# ---------------------------------------------------------------------------- directional curvature


def _fd_loss(kind, p, X):
    return jnp.sum(jnp.sin(_logits(kind, p, X))) + sum(jnp.sum(a**4) for a in jax.tree.leaves(p))


@partial(jax.jit, static_argnums=0)
def _fd_hvp(kind, params, X, v):
    return hvp(partial(_fd_loss, kind, X=X), params, v)


@given(seeds, shapes, kinds, st.sampled_from(["all", "one_layer"]))
def test_directional_curvature_matches_finite_differences(seed, shape, kind, where):
    with jax.enable_x64(True):
        params, X, f = _problem(seed, shape, kind, jnp.float64)
        loss = partial(_fd_loss, kind, X=X)
        d = _random_like(params, seed + 2)
        if where == "one_layer":  # a weight perturbation dW in one matrix, zeros elsewhere
            name = "W" if kind == "softmax" else "W1"
            d = {key: (a if key == name else jnp.zeros_like(a)) for key, a in d.items()}
        h = 1e-4
        step = lambda s: loss(jax.tree.map(lambda a, b: a + s * b, params, d))  # noqa: E731
        flat = ravel_pytree(d)[0]
        fd = float((step(h) - 2 * step(0.0) + step(-h)) / h**2) / float(flat @ flat)
        got = directional_curvature(lambda v: _fd_hvp(kind, params, X, v), d)
        assert isinstance(got, float)
        assert got == pytest.approx(fd, rel=1e-4, abs=1e-4)


@given(seeds, shapes, kinds, st.sampled_from(["fisher", "hessian"]))
def test_rayleigh_quotient_lies_between_extreme_eigenvalues(seed, shape, kind, op):
    params, X, f = _problem(seed, shape, kind)
    if op == "fisher":
        A = np.asarray(_fisher_jit(kind, params, X, None), np.float64)
        mv = lambda v: fisher_vp(f, params, v)  # noqa: E731
    else:
        A = np.asarray(_hessian_oracle(kind, params, X), np.float64)
        mv = lambda v: _hvp_jit(kind, params, X, v)  # noqa: E731
    lam = np.linalg.eigvalsh(0.5 * (A + A.T))
    d = _random_like(params, seed + 3)
    rq = rayleigh_quotient(mv, d)
    tol = 1e-5 * max(1.0, np.abs(lam).max())
    assert lam.min() - tol <= rq <= lam.max() + tol


def test_rayleigh_quotient_is_exact_on_an_eigenvector_and_works_under_jit():
    A = jnp.diag(jnp.array([4.0, 2.0, -1.0]))
    assert rayleigh_quotient(lambda v: A @ v, jnp.array([0.0, 0.0, 2.0])) == pytest.approx(-1.0)
    traced = jax.jit(lambda d: rayleigh_quotient(lambda v: A @ v, d))(jnp.array([1.0, 1.0, 0.0]))
    assert float(traced) == pytest.approx(3.0)


# ------------------------------------------------------------------------------- Schur complement


def _pd(seed, n):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    return rng, B @ B.T + 0.5 * np.eye(n)


SCHUR_SIZES = st.sampled_from([3, 5, 8])  # few sizes: eager eigh compiles once per shape
SCHUR_BLOCKS = st.sampled_from([1, 2, 4])


@given(seeds, SCHUR_SIZES, SCHUR_BLOCKS)
def test_schur_complement_is_inverse_of_block_of_inverse_and_a_minimum(seed, n, w):
    rng, F = _pd(seed, n)
    w = min(w, n - 1)
    perm = rng.permutation(n)
    idx, rest = np.sort(perm[:w]), np.sort(perm[w:])  # the block need not be contiguous
    with jax.enable_x64(True):
        S = np.asarray(schur_complement(F, idx), np.float64)
        mu = schur_min_eig(F, idx)
    np.testing.assert_allclose(S, np.linalg.inv(np.linalg.inv(F)[np.ix_(idx, idx)]), rtol=1e-8, atol=1e-10)
    x = rng.standard_normal(w)

    def quad(x, y):
        z = np.empty(n)
        z[idx], z[rest] = x, y
        return 0.5 * z @ F @ z

    y_star = -np.linalg.solve(F[np.ix_(rest, rest)], F[np.ix_(rest, idx)] @ x)
    assert 0.5 * x @ S @ x == pytest.approx(quad(x, y_star), rel=1e-8)
    assert 0.5 * x @ S @ x <= quad(x, rng.standard_normal(n - w)) + 1e-9
    assert mu <= np.linalg.eigvalsh(F[np.ix_(idx, idx)]).min() + 1e-9  # S_W <= F_WW (Loewner)
    assert mu == pytest.approx(np.linalg.eigvalsh(S).min(), rel=1e-8)


@given(seeds, SCHUR_SIZES, st.integers(1, 7))
def test_schur_complement_of_a_singular_psd_matrix_is_still_the_partial_minimum(seed, n, rank):
    rng = np.random.default_rng(seed)
    rank = min(rank, n - 1)
    B = rng.standard_normal((n, rank))
    F = B @ B.T  # PSD, singular: the pseudo-inverse branch
    idx, rest = np.arange(n // 2), np.arange(n // 2, n)
    with jax.enable_x64(True):
        S = np.asarray(schur_complement(F, idx), np.float64)
    x = rng.standard_normal(idx.size)
    y_star = -np.linalg.lstsq(F[np.ix_(rest, rest)], F[np.ix_(rest, idx)] @ x, rcond=None)[0]
    full = np.concatenate([x, y_star])
    scale = np.abs(F).max() * (x @ x)
    assert 0.5 * x @ S @ x == pytest.approx(0.5 * full @ F @ full, abs=1e-8 * scale)
    other = np.concatenate([x, y_star + rng.standard_normal(rest.size)])
    assert 0.5 * x @ S @ x <= 0.5 * other @ F @ other + 1e-8 * scale


def test_layer_indices_pick_one_weight_matrix_of_a_dense_fisher():
    params, X, f = _problem(1, SHAPES[0], "mlp")
    flat, _ = ravel_pytree(params)
    idx = layer_indices(params, "W2")
    assert np.array_equal(np.asarray(flat)[idx], np.asarray(params["W2"]).ravel())
    F = np.asarray(dense_fisher(f, params), np.float64)
    with jax.enable_x64(True):
        mu = schur_min_eig(F, idx, range_rtol=1e-4)
    assert 0 < mu <= np.linalg.eigvalsh(F[np.ix_(idx, idx)]).max()
    nested = {"a": jnp.zeros((2, 3)), "b": {"c": jnp.ones(4)}, "l": [jnp.zeros(1), jnp.ones(2)]}
    assert layer_indices(nested, ("b", "c")).tolist() == [6, 7, 8, 9]
    assert layer_indices(nested, ("l", 1)).tolist() == [11, 12]
    with pytest.raises(ValueError, match="`path`"):
        layer_indices(nested, ("z",))


def test_dense_matrix_of_a_linear_operator():
    A = jnp.asarray(np.random.default_rng(0).standard_normal((5, 5)), jnp.float32)
    np.testing.assert_allclose(np.asarray(dense_matrix(lambda v: A @ v, jnp.zeros(5), symmetrize=False)), np.asarray(A), atol=1e-6)
    np.testing.assert_allclose(np.asarray(dense_matrix(lambda v: A @ v, jnp.zeros(5))), np.asarray(A + A.T) / 2, atol=1e-6)


# ------------------------------------------------------------------------------------- bad input


def test_bad_inputs_are_refused_naming_the_argument():
    params, X, f = _problem(0, SHAPES[0])
    with pytest.raises(ValueError, match="`v`"):
        fisher_vp(f, params, {"W": jnp.zeros((1, 1)), "b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="`v`"):
        hvp(lambda p: jnp.sum(p["W"]), params, {"W": jnp.zeros((3, 4))})
    with pytest.raises(ValueError, match="`mask`"):
        fisher_vp(f, params, params, mask=jnp.ones(7))
    zero = jax.tree.map(jnp.zeros_like, params)
    with pytest.raises(ValueError, match="`direction` is zero"):
        directional_curvature(lambda v: v, zero)
    nan = jax.tree.map(lambda a: a * jnp.nan, params)
    with pytest.raises(ValueError, match="`direction`"):
        directional_curvature(lambda v: v, nan)
    inf = {"W": params["W"].at[0, 0].set(jnp.inf), "b": params["b"]}
    with pytest.raises(ValueError, match="`direction`"):
        rayleigh_quotient(lambda v: v, inf)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`k`"):
        lanczos_top_eigs(lambda v: v, jnp.zeros(3), 0, 3, key)
    with pytest.raises(ValueError, match="`k`"):
        lanczos_top_eigs(lambda v: v, 3, 4, 4, key)
    with pytest.raises(ValueError, match="`num_iters`"):
        lanczos_top_eigs(lambda v: v, 3, 2, 1, key)
    with pytest.raises(ValueError, match="`dim_or_example`"):
        lanczos_top_eigs(lambda v: v, 0, 1, 1, key)
    with pytest.raises(ValueError, match="`matvec`"):
        lanczos_top_eigs(lambda v: jnp.zeros(2), 3, 1, 3, key)
    with pytest.raises(ValueError, match="`idx`"):
        schur_min_eig(np.eye(3), [5])
