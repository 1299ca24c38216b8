"""theory.curvature: Hessian/Fisher-vector products, Lanczos, Rayleigh quotients, dense Fisher, Schur complements."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.flatten_util import ravel_pytree

from theory.curvature import (
    dense_fisher,
    dense_matrix,
    directional_curvature,
    fisher_vp,
    hvp,
    lanczos_top_eigs,
    layer_indices,
    schur_complement,
    schur_min_eig,
)

SHAPES = [(2, 3, 4), (3, 2, 5), (4, 3, 3)]  # (inputs N, features d, classes V): few shapes, few compiles


def _problem(seed, shape):
    n, d, v = shape
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {"W": jax.random.normal(k1, (d, v)), "b": 0.3 * jax.random.normal(k2, (v,))}
    X = jax.random.normal(k3, (n, d))
    return params, X, (lambda p: X @ p["W"] + p["b"])


def _dense_oracle(params, logits_fn):
    """J^T (diag p - p p^T) J / N with J from jax.jacfwd (an independent construction)."""
    flat, unravel = ravel_pytree(params)
    z = logits_fn(params)
    J = jax.jacfwd(lambda f: logits_fn(unravel(f)))(flat)  # (N, V, P)
    p = jax.nn.softmax(z, axis=-1)
    H = jax.vmap(lambda q: jnp.diag(q) - jnp.outer(q, q))(p)
    return jnp.einsum("nvp,nvw,nwq->pq", J, H, J) / z.shape[0]


seeds = st.integers(0, 2**20)
shapes = st.sampled_from(SHAPES)


@given(seeds, shapes)
def test_fisher_vp_matches_dense_jacobian_oracle(seed, shape):
    params, X, f = _problem(seed, shape)
    np.testing.assert_allclose(np.asarray(dense_fisher(f, params)), np.asarray(_dense_oracle(params, f)), rtol=1e-4, atol=1e-5)


@given(seeds, shapes)
def test_fisher_is_psd_and_equals_hessian_of_kl_at_the_point(seed, shape):
    params, X, f = _problem(seed, shape)
    F = np.asarray(dense_fisher(f, params), np.float64)
    assert np.linalg.eigvalsh(F).min() > -1e-5 * max(1.0, np.abs(F).max())
    flat0, unravel = ravel_pytree(params)
    p0 = jax.nn.softmax(f(params), axis=-1)

    def kl(flat):
        lq = jax.nn.log_softmax(f(unravel(flat)), axis=-1)
        return jnp.mean(jnp.sum(p0 * (jnp.log(p0) - lq), axis=-1))

    H = np.asarray(jax.hessian(kl)(flat0), np.float64)
    np.testing.assert_allclose(F, H, rtol=1e-3, atol=1e-4)


@given(seeds, shapes)
def test_hvp_matches_jax_hessian(seed, shape):
    params, X, f = _problem(seed, shape)
    y = jnp.arange(X.shape[0]) % f(params).shape[-1]
    loss = lambda p: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(f(p)), y[:, None], 1)) + 0.1 * jnp.sum(jnp.tanh(p["W"]) ** 2)
    flat0, unravel = ravel_pytree(params)
    H = np.asarray(jax.hessian(lambda x: loss(unravel(x)))(flat0))
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(seed + 1), a.shape), params)
    got = np.asarray(ravel_pytree(hvp(loss, params, v))[0])
    np.testing.assert_allclose(got, H @ np.asarray(ravel_pytree(v)[0]), rtol=1e-4, atol=1e-5)


@given(seeds, shapes)
def test_directional_curvature_matches_finite_differences(seed, shape):
    jax.config.update("jax_enable_x64", True)
    try:
        params, X, f = _problem(seed, shape)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        loss = lambda p: jnp.sum(jnp.sin(f(p))) + jnp.sum(p["W"] ** 4)
        d = jax.tree.map(lambda a: jax.random.normal(jax.random.key(seed + 2), a.shape, jnp.float64), params)
        h = 1e-4
        step = lambda s: loss(jax.tree.map(lambda a, b: a + s * b, params, d))
        fd = float((step(h) - 2 * step(0.0) + step(-h)) / h**2) / float(jnp.vdot(*[ravel_pytree(d)[0]] * 2))
        got = directional_curvature(lambda v: hvp(loss, params, v), d)
        assert got == pytest.approx(fd, rel=1e-4, abs=1e-5)
    finally:
        jax.config.update("jax_enable_x64", False)


@given(seeds, shapes)
def test_rayleigh_quotient_lies_between_extreme_eigenvalues(seed, shape):
    params, X, f = _problem(seed, shape)
    F = np.asarray(dense_fisher(f, params), np.float64)
    lam = np.linalg.eigvalsh(F)
    d = jax.tree.map(lambda a: jax.random.normal(jax.random.key(seed + 3), a.shape), params)
    rq = directional_curvature(lambda v: fisher_vp(f, params, v), d)
    tol = 1e-5 * max(1.0, lam.max())
    assert lam.min() - tol <= rq <= lam.max() + tol


@given(seeds, st.integers(2, 12), st.sampled_from(["distinct", "repeated"]))
def test_lanczos_top_eigenvalues_match_eigvalsh(seed, dim, spectrum):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    lam = rng.uniform(0.1, 5.0, dim) if spectrum == "distinct" else np.repeat([3.0, 1.0], [dim // 2, dim - dim // 2])
    A = jnp.asarray((Q * lam) @ Q.T, jnp.float32)
    k = min(3, dim)
    got, vecs = lanczos_top_eigs(lambda v: A @ v, jnp.zeros(dim), k, dim, jax.random.key(seed))
    want = np.sort(np.linalg.eigvalsh(np.asarray(A, np.float64)))[::-1]
    np.testing.assert_allclose(got, want[:k], rtol=1e-3, atol=1e-4)  # repeated eigenvalues with multiplicity
    v0 = np.asarray(vecs[0])
    assert float(v0 @ np.asarray(A) @ v0) / float(v0 @ v0) == pytest.approx(want[0], rel=1e-3)


@given(seeds, st.integers(3, 8))
def test_schur_complement_is_inverse_of_block_of_inverse_and_a_minimum(seed, n):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    F = B @ B.T + 0.5 * np.eye(n)
    idx = np.arange(n // 2)
    S = np.asarray(schur_complement(F, idx), np.float64)
    Finv = np.linalg.inv(F)
    np.testing.assert_allclose(S, np.linalg.inv(Finv[np.ix_(idx, idx)]), rtol=1e-4, atol=1e-6)
    x = rng.standard_normal(idx.size)
    rest = np.arange(n // 2, n)
    y_star = -np.linalg.solve(F[np.ix_(rest, rest)], F[np.ix_(rest, idx)] @ x)
    full = np.concatenate([x, y_star])
    assert 0.5 * x @ S @ x == pytest.approx(0.5 * full @ F @ full, rel=1e-4)
    y = rng.standard_normal(rest.size)
    other = np.concatenate([x, y])
    assert 0.5 * x @ S @ x <= 0.5 * other @ F @ other + 1e-9
    assert schur_min_eig(F, idx) <= np.linalg.eigvalsh(F[np.ix_(idx, idx)]).min() + 1e-6


def test_layer_indices_follow_ravel_order():
    params = {"a": jnp.zeros((2, 3)), "b": {"c": jnp.ones(4)}}
    flat, _ = ravel_pytree(params)
    assert layer_indices(params, ("b", "c")).tolist() == [6, 7, 8, 9]
    assert np.all(np.asarray(flat)[layer_indices(params, ("b", "c"))] == 1)
    with pytest.raises(ValueError, match="path"):
        layer_indices(params, ("z",))


def test_dense_matrix_of_a_linear_operator():
    A = jnp.asarray(np.random.default_rng(0).standard_normal((5, 5)), jnp.float32)
    A = A + A.T
    np.testing.assert_allclose(np.asarray(dense_matrix(lambda v: A @ v, jnp.zeros(5))), np.asarray(A), atol=1e-6)


def test_bad_inputs_are_refused_naming_the_argument():
    params, X, f = _problem(0, SHAPES[0])
    with pytest.raises(ValueError, match="`v`"):
        fisher_vp(f, params, {"W": jnp.zeros((1, 1)), "b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="`v`"):
        hvp(lambda p: jnp.sum(p["W"]), params, {"W": jnp.zeros((3, 4))})
    zero = jax.tree.map(jnp.zeros_like, params)
    with pytest.raises(ValueError, match="`direction` is zero"):
        directional_curvature(lambda v: v, zero)
    nan = jax.tree.map(lambda a: a * jnp.nan, params)
    with pytest.raises(ValueError, match="`direction`"):
        directional_curvature(lambda v: v, nan)
    with pytest.raises(ValueError, match="`k`"):
        lanczos_top_eigs(lambda v: v, jnp.zeros(3), 0, 3, jax.random.key(0))
    with pytest.raises(ValueError, match="`k`"):
        lanczos_top_eigs(lambda v: v, jnp.zeros(3), 4, 4, jax.random.key(0))
