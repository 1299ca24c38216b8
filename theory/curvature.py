"""Curvature measured directly (Gate II, beyond the paper; docs/science.md section 4, "Directional curvature").

The paper argues, without proof, that RL steps avoid principal (high-curvature) directions. On small
models the curvature can be measured: Hessian- and Fisher-vector products, Lanczos for the top
eigenvalues, the Rayleigh quotient d^T A d / |d|^2 of a weight perturbation d, and for models small
enough the dense Fisher with its per-layer Schur complement (mu_W of Prop 3.2's per-layer leash).

Functions take parameter pytrees; ``jax.flatten_util.ravel_pytree`` fixes the flat order used by the
dense forms and by ``layer_indices``. The Schur complement itself lives in ``theory.kl`` (Prop 3.2;
pseudo-inverse of F_rest,rest with rcond = n * eps * lambda_max) and is re-exported here.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from theory.kl import mu_min, schur_complement
from theory.validate import is_concrete, require_rank_index

__all__ = [
    "hvp", "fisher_vp", "lanczos_top_eigs", "directional_curvature", "rayleigh_quotient",
    "dense_matrix", "dense_fisher", "layer_indices", "schur_complement", "schur_min_eig",
]


def _same_structure(name: str, a, b) -> None:
    """Refuse a pytree ``b`` (the argument ``name``) whose structure or leaf shapes differ from ``params`` ``a``."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError(f"Argument `{name}` must have the same pytree structure as `params`.")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if np.shape(x) != np.shape(y):
            raise ValueError(f"Argument `{name}` has a leaf of shape {np.shape(y)} where `params` has {np.shape(x)}.")


def hvp(loss_fn, params, v):
    """Hessian-vector product H v of a scalar ``loss_fn(params)`` by forward-over-reverse (jvp of grad).

    Exact to round-off; costs about one gradient evaluation; ``v`` is a pytree shaped like ``params``."""
    _same_structure("v", params, v)
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def fisher_vp(logits_fn, params, v, mask=None):
    """Generalised Gauss-Newton / Fisher-vector product of a softmax output.

    F v = (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n v over the N unmasked positions, where
    ``logits_fn(params)`` returns logits [..., V] (the softmax is taken in fp32), J_n is the Jacobian of
    position n's logits (J v by one jvp, J^T by one vjp) and ``mask`` (shape logits.shape[:-1], 1 = keep)
    selects the positions; an all-zero mask gives zero. For a softmax likelihood evaluated on the
    model's own samples this GGN equals the Fisher information, i.e. the Hessian of
    KL(pi_theta0 || pi_theta) at theta = theta0 (Prop 3.2's F).
    """
    _same_structure("v", params, v)
    logits, vjp = jax.vjp(logits_fn, params)
    _, dz = jax.jvp(logits_fn, (params,), (v,))
    if mask is not None and np.shape(mask) != tuple(logits.shape[:-1]):
        raise ValueError(f"Argument `mask` must have shape {tuple(logits.shape[:-1])} (the logits without the vocabulary axis), "
                         f"got {tuple(np.shape(mask))}.")
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    dz = dz.astype(jnp.float32)
    hz = p * (dz - jnp.sum(p * dz, axis=-1, keepdims=True))  # (diag p - p p^T) J v, position by position
    if mask is None:
        hz = hz / max(int(np.prod(logits.shape[:-1])), 1)
    else:
        m = jnp.asarray(mask, jnp.float32)
        hz = hz * m[..., None] / jnp.maximum(jnp.sum(m), 1.0)
    return vjp(hz.astype(logits.dtype))[0]


def rayleigh_quotient(matvec, direction):
    """Rayleigh quotient d^T A d / |d|^2 of a symmetric operator ``matvec`` along a pytree ``direction``.

    Lies in [lambda_min(A), lambda_max(A)]. A zero or non-finite direction raises ValueError (checked on
    concrete values; under ``jit`` the value is returned as a traced scalar without the checks).
    Returns a Python float for concrete inputs."""
    flat, _ = ravel_pytree(direction)
    if flat.size == 0:
        raise ValueError("Argument `direction` is empty; it needs at least one element.")
    norm2 = jnp.vdot(flat, flat)
    if is_concrete(norm2):
        if not bool(np.all(np.isfinite(np.asarray(flat, np.float64)))):
            raise ValueError("Argument `direction` contains NaN or infinite values.")
        if float(norm2) == 0.0:
            raise ValueError("Argument `direction` is zero; curvature along it is undefined.")
    av, _ = ravel_pytree(matvec(direction))
    if av.shape != flat.shape:
        raise ValueError(f"Argument `matvec` returned {av.size} values for a direction of {flat.size}.")
    rq = jnp.vdot(flat, av) / norm2
    return float(rq) if is_concrete(rq) else rq


def directional_curvature(matvec, direction):
    """Directional curvature of docs/science.md section 4: d^T A d / |d|^2 with A the Hessian (``hvp``) or
    Fisher/GGN (``fisher_vp``) operator and d a weight perturbation (e.g. dW in one layer, zeros elsewhere)."""
    return rayleigh_quotient(matvec, direction)


def _key_seed(key) -> list[int]:
    """The integer words of a JAX key (typed or legacy uint32), to seed numpy deterministically."""
    if jax.dtypes.issubdtype(getattr(key, "dtype", np.uint32), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).astype(np.uint64).ravel().tolist()


def lanczos_top_eigs(matvec, dim_or_example, k: int, num_iters: int, key):
    """Top-k eigenvalues (descending) of a symmetric (PSD or indefinite) operator, by Lanczos.

    ``dim_or_example`` is an int P (then ``matvec`` maps flat fp32 vectors of length P) or a pytree
    whose shape ``matvec``'s argument and result share. Full reorthogonalisation (twice, in float64)
    against all previous Lanczos vectors, started from a unit Gaussian vector drawn from ``key`` (same
    key, same result). On breakdown (an invariant subspace, as with a repeated eigenvalue) it restarts
    with a random vector orthogonal to all previous ones, so repeated eigenvalues come out with their
    multiplicity. With ``num_iters`` >= P the result is exact up to round-off; with fewer it gives
    Ritz values, each within [lambda_min, lambda_max]. Meant for small problems (stores every vector).
    Returns (eigenvalues as a float64 array of length min(k, iterations), Ritz vectors as a list of
    arrays shaped like ``dim_or_example``)."""
    if isinstance(dim_or_example, numbers.Integral) and not isinstance(dim_or_example, bool):
        if int(dim_or_example) < 1:
            raise ValueError(f"Argument `dim_or_example` must be a positive dimension, got {dim_or_example}.")
        example = jnp.zeros(int(dim_or_example), jnp.float32)
    else:
        example = dim_or_example
    flat0, unravel = ravel_pytree(example)
    dim = int(flat0.size)
    if dim == 0:
        raise ValueError("Argument `dim_or_example` is empty; it needs at least one element.")
    require_rank_index("k", k, dim)
    if int(num_iters) != num_iters or int(num_iters) < int(k):
        raise ValueError(f"Argument `num_iters` must be an integer of at least k={k}, got {num_iters}.")
    k, num_iters = int(k), min(int(num_iters), dim)

    def mv(x):
        out = np.asarray(ravel_pytree(matvec(unravel(jnp.asarray(x, flat0.dtype))))[0], np.float64)
        if out.shape != (dim,):
            raise ValueError(f"Argument `matvec` returned {out.size} values for a vector of {dim}.")
        if not np.all(np.isfinite(out)):
            raise ValueError("Argument `matvec` returned NaN or infinite values.")
        return out

    rng = np.random.default_rng(_key_seed(key))

    def fresh(Qm):
        w = rng.standard_normal(dim)
        if Qm is not None:
            w = w - Qm.T @ (Qm @ w)
            w = w - Qm.T @ (Qm @ w)
        return w / np.linalg.norm(w)

    Q, alphas, betas = [fresh(None)], [], []
    scale = 0.0
    for j in range(num_iters):
        w = mv(Q[-1])
        alphas.append(float(Q[-1] @ w))
        scale = max(scale, float(np.linalg.norm(w)))
        Qm = np.array(Q)
        w = w - Qm.T @ (Qm @ w)
        w = w - Qm.T @ (Qm @ w)
        if j == num_iters - 1:
            break
        b = float(np.linalg.norm(w))
        if b <= 1e-5 * max(scale, 1e-30):
            betas.append(0.0)  # invariant subspace: T splits into blocks, continue in the complement
            Q.append(fresh(Qm))
        else:
            betas.append(b)
            Q.append(w / b)
    n = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: n - 1], 1) + np.diag(betas[: n - 1], -1)
    evals, evecs = np.linalg.eigh(T)
    order = np.argsort(evals)[::-1][: min(k, n)]
    basis = np.array(Q[:n]).T
    vecs = [unravel(jnp.asarray(basis @ evecs[:, i], flat0.dtype)) for i in order]
    return evals[order], vecs


def dense_matrix(matvec, params, symmetrize: bool = True) -> jnp.ndarray:
    """The linear operator ``matvec`` (on pytrees shaped like ``params``) as a dense (P, P) matrix in
    ravel_pytree order, column j = matvec(e_j) (vmapped over unit vectors; small models only).

    With ``symmetrize`` (default) returns (M + M^T) / 2, which removes round-off asymmetry of a
    symmetric operator (Hessian, Fisher); pass False to get M as computed."""
    flat, unravel = ravel_pytree(params)
    if flat.size == 0:
        raise ValueError("Argument `params` is empty; it needs at least one element.")
    cols = jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(jnp.eye(flat.size, dtype=flat.dtype))
    if cols.shape != (flat.size, flat.size):
        raise ValueError(f"Argument `matvec` returned {cols.shape[-1]} values for a vector of {flat.size}.")
    M = cols.T
    return 0.5 * (M + M.T) if symmetrize else M


def dense_fisher(logits_fn, params, mask=None) -> jnp.ndarray:
    """Dense Fisher / GGN (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n in ravel_pytree order (``fisher_vp``
    applied to every unit vector); PSD up to round-off."""
    return dense_matrix(lambda v: fisher_vp(logits_fn, params, v, mask), params)


def _key_name(k):
    """A path entry of ``tree_leaves_with_path`` as the plain key, index or attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def layer_indices(params, path) -> np.ndarray:
    """Flat indices (ravel_pytree order) of the leaf at ``path`` in ``params``: a tuple of dict keys /
    sequence indices / attribute names (a single string means a top-level key), e.g. ("block0", "kernel").
    Use with ``schur_complement``/``schur_min_eig`` to pick one weight matrix out of a dense Fisher."""
    path = (path,) if isinstance(path, (str, int)) else tuple(path)
    offset = 0
    for p, leaf in jax.tree_util.tree_leaves_with_path(params):
        size = int(np.size(leaf))
        if tuple(_key_name(k) for k in p) == path:
            return np.arange(offset, offset + size)
        offset += size
    raise ValueError(f"Argument `path` {path} names no leaf of `params`.")


def schur_min_eig(F, idx, range_rtol: float | None = None) -> float:
    """mu_W = lambda_min(S_W), S_W = F_WW - F_W,rest F_rest,rest^+ F_rest,W the Schur complement of block
    ``idx`` of F (Prop 3.2's per-layer leash |dW|_F <= sqrt(2 delta_W / mu_W)); the pseudo-inverse drops
    eigenvalues <= n * eps * lambda_max (see ``theory.kl.schur_complement``). With ``range_rtol`` the
    smallest eigenvalue above range_rtol * lambda_max(S_W): the floor on the range (softmax Fishers are
    singular along the logit shift)."""
    return float(mu_min(schur_complement(F, idx), range_rtol=range_rtol))
