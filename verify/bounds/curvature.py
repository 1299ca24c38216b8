"""Curvature (Gate II, beyond the paper): rows of the `python -m verify theory` table for theory/curvature.py.

Instances: random tiny softmax-regression (logits X W + b) and one-hidden-layer tanh MLP problems from a
small pool of shapes (so compiled kernels are reused), fp32 as the models run. Each instance gives the
dense Fisher F (dense_fisher) and the dense Hessian H of a cross-entropy loss (jax.hessian, the oracle),
a random direction (every parameter, or a weight perturbation dW in one matrix with zeros elsewhere),
and checks the statements below. Ratio = lhs / rhs (<= 1: the statement held).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from theory.curvature import dense_fisher, fisher_vp, hvp, lanczos_top_eigs, layer_indices, rayleigh_quotient, schur_min_eig
from verify.bounds.row import BoundRow, count_violations, ratios

POOL = (("softmax", (3, 2, 3)), ("softmax", (6, 3, 4)), ("mlp", (10, 2, 3)), ("mlp", (12, 3, 4)))  # (kind, (N, d, V))
HIDDEN = 3
RQ_ATOL = 1e-5  # float32 round-off allowed outside [lambda_min, lambda_max], relative to max |lambda|
LANCZOS_TOL = 1e-4  # relative error of the top-3 Lanczos eigenvalues (iterations = dimension)
HVP_TOL = 1e-4  # relative error |hvp - H v| / |H v|
PSD_TOL = 1e-5  # allowed -lambda_min(F) relative to lambda_max(F)
SCHUR_RIDGE = 1e-3  # F + ridge * lambda_max * I makes F positive definite, so S_W is the exact Schur complement


def _logits(kind, p, X):
    if kind == "softmax":
        return X @ p["W"] + p["b"]
    return jnp.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def _loss(kind, p, X, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(_logits(kind, p, X)), y[:, None], 1))


def _problem(rng, kind, shape):
    n, d, v = shape
    g = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
    if kind == "softmax":
        params = {"W": g(d, v), "b": 0.5 * g(v)}
    else:
        params = {"W1": g(d, HIDDEN), "b1": 0.5 * g(HIDDEN), "W2": g(HIDDEN, v), "b2": 0.5 * g(v)}
    return params, g(n, d), jnp.asarray(rng.integers(0, v, n))


@partial(jax.jit, static_argnums=0)
def _dense(kind, params, X, y):
    """(dense Fisher from theory.curvature, dense Hessian of the loss from jax.hessian)."""
    flat, unravel = ravel_pytree(params)
    F = dense_fisher(lambda p: _logits(kind, p, X), params)
    H = jax.hessian(lambda f: _loss(kind, unravel(f), X, y))(flat)
    return F, H


@partial(jax.jit, static_argnums=0)
def _hvp(kind, params, X, y, v):
    return hvp(lambda p: _loss(kind, p, X, y), params, v)


@partial(jax.jit, static_argnums=0)
def _fvp(kind, params, X, v):
    return fisher_vp(lambda p: _logits(kind, p, X), params, v)


def _direction(rng, params, kind, i):
    """Every parameter (even i) or a weight perturbation dW in one matrix, zeros elsewhere (odd i)."""
    names = ("W",) if kind == "softmax" else ("W1", "W2")
    one = names[(i // 2) % len(names)]
    return {k: (jnp.asarray(rng.standard_normal(a.shape), jnp.float32) if i % 2 == 0 or k == one else jnp.zeros_like(a))
            for k, a in params.items()}


def rows(seed: int = 0, n: int = 100) -> list[BoundRow]:
    """Rayleigh-quotient range, Lanczos and hvp oracles, Fisher PSD, Schur dominance on ``n`` random problems."""
    rng = np.random.default_rng(seed)
    rq, lz, hv, psd, schur = ([], []), [], [], ([], []), ([], [])
    for i in range(n):
        kind, shape = POOL[i % len(POOL)]
        params, X, y = _problem(rng, kind, shape)
        F, H = (np.asarray(m, np.float64) for m in _dense(kind, params, X, y))
        H = 0.5 * (H + H.T)
        lam_F, lam_H = np.linalg.eigvalsh(F), np.linalg.eigvalsh(H)
        d = _direction(rng, params, kind, i)
        flat_d = np.asarray(ravel_pytree(d)[0], np.float64)
        # Rayleigh quotients of F and H (indefinite): |q - mid| <= half-width of [lambda_min, lambda_max]
        for lam, mv in ((lam_F, lambda v: _fvp(kind, params, X, v)), (lam_H, lambda v: _hvp(kind, params, X, y, v))):
            q = rayleigh_quotient(mv, d)
            s = max(np.abs(lam).max(), 1e-30)
            rq[0].append(abs(q - 0.5 * (lam[0] + lam[-1])) / s)
            rq[1].append(0.5 * (lam[-1] - lam[0]) / s)
        # Lanczos (matrix-free, iterations = dimension) vs eigvalsh; Fisher on even instances, Hessian on odd
        _, unravel = ravel_pytree(params)
        lam, mv = (lam_F, lambda x: ravel_pytree(_fvp(kind, params, X, unravel(x)))[0]) if i % 2 == 0 else \
                  (lam_H, lambda x: ravel_pytree(_hvp(kind, params, X, y, unravel(x)))[0])
        k = min(3, lam.size)
        top, _ = lanczos_top_eigs(mv, lam.size, k, lam.size, jax.random.key(seed * 100_003 + i))
        lz.append(np.max(np.abs(top - lam[::-1][:k])) / max(np.abs(lam).max(), 1e-30))
        # hvp vs jax.hessian
        got = np.asarray(ravel_pytree(_hvp(kind, params, X, y, d))[0], np.float64)
        want = H @ flat_d
        hv.append(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
        # Fisher PSD: -lambda_min(F) <= PSD_TOL * lambda_max(F)
        psd[0].append(-lam_F[0])
        psd[1].append(PSD_TOL * max(lam_F[-1], 1e-30))
        # Schur complement of one block: lambda_min(S_W) <= lambda_min(F_WW). The block is the MLP's first
        # weight matrix, or the softmax weights' first class column (a whole softmax W holds the null
        # direction of the logit shift, which would make both sides equal to the ridge)
        idx = layer_indices(params, "W1") if kind == "mlp" else layer_indices(params, "W")[:: shape[2]]
        Fr = F + SCHUR_RIDGE * max(lam_F[-1], 1e-30) * np.eye(F.shape[0])
        with jax.enable_x64(True):
            schur[0].append(schur_min_eig(Fr, idx))
        schur[1].append(np.linalg.eigvalsh(Fr[np.ix_(idx, idx)])[0])
    rq_l, rq_r = np.asarray(rq[0]), np.asarray(rq[1])
    lz, hv = np.asarray(lz), np.asarray(hv)
    s_ratio = ratios(schur[0], schur[1])
    return [
        BoundRow("Rayleigh quotient within [lambda_min, lambda_max]",
                 "|d^T A d/|d|^2 - (l_min+l_max)/2| <= (l_max-l_min)/2, A = Fisher or Hessian (indefinite), d random or one-layer dW",
                 True, ratios(rq_l, rq_r), count_violations(rq_l, rq_r, atol=RQ_ATOL)),
        BoundRow("Lanczos top eigenvalue vs dense eigvalsh",
                 f"max_i<=3 |lanczos_i - eigvalsh_i| / max|lambda| <= {LANCZOS_TOL} (Fisher and Hessian, iterations = P)",
                 True, lz / LANCZOS_TOL, count_violations(lz, np.full(n, LANCZOS_TOL))),
        BoundRow("hvp vs jax.hessian", f"|hvp(d) - H d| / |H d| <= {HVP_TOL}", True,
                 hv / HVP_TOL, count_violations(hv, np.full(n, HVP_TOL))),
        BoundRow("Fisher PSD", f"-lambda_min(F) <= {PSD_TOL} lambda_max(F) (float32 round-off)", True,
                 ratios(psd[0], psd[1]), count_violations(psd[0], psd[1])),
        BoundRow("Schur complement min eig <= min eig of F_WW block",
                 f"lambda_min(S_W) <= lambda_min(F_WW), W = MLP W1 or one softmax class column, F + {SCHUR_RIDGE} lambda_max I",
                 True, s_ratio, count_violations(schur[0], schur[1], rtol=1e-6, atol=1e-12),
                 finding=f"the per-layer curvature floor mu_W is a median {np.median(s_ratio):.2g} (min {np.min(s_ratio):.2g}) "
                         "of the block's own lambda_min: coupling to the other layers lowers it"),
    ]
