"""Curvature measured directly (Gate II, beyond the paper): Hessian- and Fisher-vector products,
Lanczos for the top eigenvalues, directional curvature of a weight perturbation, dense Fisher and
its per-layer Schur complement for models small enough to hold it.

Functions take parameter pytrees; ``jax.flatten_util.ravel_pytree`` fixes the flat order used by
the dense forms. The Schur complement itself lives in ``theory.kl`` (Prop 3.2) and is reused here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from theory.kl import mu_min, schur_complement

__all__ = [
    "hvp", "fisher_vp", "lanczos_top_eigs", "directional_curvature", "rayleigh_quotient",
    "dense_matrix", "dense_fisher", "layer_indices", "schur_complement", "schur_min_eig",
]


def _same_structure(name: str, a, b) -> None:
    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError(f"Argument `{name}` must have the same pytree structure as `params`.")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if np.shape(x) != np.shape(y):
            raise ValueError(f"Argument `{name}` has a leaf of shape {np.shape(y)} where `params` has {np.shape(x)}.")


def hvp(loss_fn, params, v):
    """Hessian-vector product H v of a scalar ``loss_fn(params)``, by forward-over-reverse (jvp of grad)."""
    _same_structure("v", params, v)
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def fisher_vp(logits_fn, params, v, mask=None):
    """Generalised Gauss-Newton / Fisher-vector product of a softmax output.

    F v = (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n v over the N unmasked positions, where
    ``logits_fn(params)`` returns float logits [..., V] and J_n is the Jacobian of position n's logits.
    For a softmax likelihood evaluated on the model's own samples this GGN equals the Fisher
    information (the curvature of KL(pi_theta0 || pi_theta) at theta0).
    """
    _same_structure("v", params, v)
    logits, vjp = jax.vjp(logits_fn, params)
    _, dz = jax.jvp(logits_fn, (params,), (v,))
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    hz = p * (dz - jnp.sum(p * dz, axis=-1, keepdims=True))
    if mask is None:
        n = np.prod(logits.shape[:-1])
        hz = hz / n
    else:
        m = jnp.asarray(mask, jnp.float32)
        hz = hz * m[..., None] / jnp.maximum(jnp.sum(m), 1.0)
    return vjp(hz.astype(logits.dtype))[0]


def rayleigh_quotient(matvec, direction) -> float:
    """d^T A d / |d|^2 for a symmetric operator ``matvec`` and a pytree direction d (non-zero, finite)."""
    flat, _ = ravel_pytree(direction)
    norm2 = float(jnp.vdot(flat, flat))
    if not np.isfinite(norm2):
        raise ValueError("Argument `direction` contains NaN or infinite values.")
    if norm2 == 0.0:
        raise ValueError("Argument `direction` is zero; curvature along it is undefined.")
    av, _ = ravel_pytree(matvec(direction))
    return float(jnp.vdot(flat, av)) / norm2


def directional_curvature(matvec, direction) -> float:
    """Curvature along a weight perturbation: d^T A d / |d|^2 with A the Hessian or Fisher operator."""
    return rayleigh_quotient(matvec, direction)


def lanczos_top_eigs(matvec, example, k: int, num_iters: int, key):
    """Top-k eigenvalues (descending) of a symmetric operator on pytrees shaped like ``example``.

    Lanczos with full reorthogonalisation (twice), started from a unit Gaussian vector drawn from
    ``key``; on breakdown (an invariant subspace, as with a repeated eigenvalue) it restarts with a
    vector orthogonal to all previous ones, so repeated eigenvalues appear with their multiplicity;
    exact (up to round-off) once ``num_iters`` reaches the dimension. Returns (eigenvalues,
    Ritz vectors as a list of pytrees)."""
    flat0, unravel = ravel_pytree(example)
    dim = int(flat0.size)
    if int(k) != k or not 1 <= k <= dim:
        raise ValueError(f"Argument `k` must be an integer in [1, {dim}], got {k}.")
    if num_iters < k:
        raise ValueError(f"Argument `num_iters` must be at least k={k}, got {num_iters}.")
    num_iters = min(int(num_iters), dim)
    mv = lambda x: np.asarray(ravel_pytree(matvec(unravel(jnp.asarray(x, flat0.dtype))))[0], np.float64)  # noqa: E731
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    q = rng.standard_normal(dim)
    q /= np.linalg.norm(q)
    Q, alphas, betas = [q], [], []
    scale = 0.0
    for j in range(num_iters):
        w = mv(Q[-1])
        alphas.append(float(Q[-1] @ w))
        scale = max(scale, float(np.linalg.norm(w)))
        Qm = np.array(Q)
        w = w - Qm.T @ (Qm @ w)
        w = w - Qm.T @ (Qm @ w)
        b = float(np.linalg.norm(w))
        if j == num_iters - 1:
            break
        if b <= 1e-5 * max(scale, 1e-30):
            # invariant subspace found (e.g. a repeated eigenvalue): restart orthogonally, T splits in blocks
            w = rng.standard_normal(dim)
            w = w - Qm.T @ (Qm @ w)
            w = w - Qm.T @ (Qm @ w)
            betas.append(0.0)
            Q.append(w / np.linalg.norm(w))
            continue
        betas.append(b)
        Q.append(w / b)
    n = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: n - 1], 1) + np.diag(betas[: n - 1], -1)
    evals, evecs = np.linalg.eigh(T)
    order = np.argsort(evals)[::-1][: min(k, n)]
    vecs = [unravel(jnp.asarray(np.array(Q[:n]).T @ evecs[:, i], flat0.dtype)) for i in order]
    return evals[order], vecs


def dense_matrix(matvec, params) -> jnp.ndarray:
    """The operator as a dense (P, P) matrix in ravel_pytree order (P parameters; small models only)."""
    flat, unravel = ravel_pytree(params)
    cols = jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(jnp.eye(flat.size, dtype=flat.dtype))
    M = cols.T
    return 0.5 * (M + M.T)


def dense_fisher(logits_fn, params, mask=None) -> jnp.ndarray:
    """Dense Fisher (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n in ravel_pytree order."""
    return dense_matrix(lambda v: fisher_vp(logits_fn, params, v, mask), params)


def layer_indices(params, path) -> np.ndarray:
    """Flat indices (ravel_pytree order) of the leaf at ``path`` (a tuple of keys/indices) in ``params``."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    offset = 0
    for p, leaf in leaves:
        keys = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in p)
        size = int(np.size(leaf))
        if keys == tuple(path):
            return np.arange(offset, offset + size)
        offset += size
    raise ValueError(f"Argument `path` {tuple(path)} names no leaf of `params`.")


def schur_min_eig(F, idx, range_rtol: float | None = None) -> float:
    """lambda_min of the Schur complement S_W of block ``idx`` of F (mu_W of Prop 3.2's per-layer bound);
    with ``range_rtol`` the smallest eigenvalue on the range of S_W (softmax Fishers are singular)."""
    return float(mu_min(schur_complement(F, idx), range_rtol=range_rtol))
