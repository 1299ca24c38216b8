"""`python -m verify theory` rows for theory/curvature.py on random tiny softmax-regression problems."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from theory.curvature import dense_fisher, directional_curvature, fisher_vp, hvp, lanczos_top_eigs, schur_min_eig
from verify.bound_table import BoundRow, count_violations, ratios

LANCZOS_RTOL = 1e-3
HVP_RTOL = 1e-3


def _problem(rng):
    n, d, v = rng.integers(2, 5), rng.integers(2, 4), rng.integers(2, 5)
    params = {"W": jnp.asarray(rng.standard_normal((d, v)), jnp.float32), "b": jnp.asarray(rng.standard_normal(v), jnp.float32)}
    X = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    return params, (lambda p: X @ p["W"] + p["b"])


def rows(seed: int = 0, n: int = 60) -> list[BoundRow]:
    """Rayleigh-quotient range, Lanczos and HVP oracles, Fisher PSD and Schur dominance on random problems."""
    rng = np.random.default_rng(seed)
    rq_lo, rq_hi, lz, hv, psd, schur = [], [], [], [], [], []  # schur_complement computes in float32: rtol 1e-4 below
    for i in range(n):
        params, f = _problem(rng)
        F = np.asarray(dense_fisher(f, params), np.float64)
        lam = np.linalg.eigvalsh(F)
        d = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), params)
        rq = directional_curvature(lambda v: fisher_vp(f, params, v), d)
        scale = max(lam.max(), 1e-12)
        rq_lo.append((lam.min() - rq) / scale)  # <= 0 when the quotient is above lambda_min
        rq_hi.append((rq - lam.max()) / scale)  # <= 0 when below lambda_max
        top, _ = lanczos_top_eigs(lambda v: fisher_vp(f, params, v), params, 1, F.shape[0], jax.random.key(i))
        lz.append(abs(top[0] - lam.max()) / scale)
        loss = lambda p: jnp.sum(jax.nn.log_softmax(f(p))[:, 0]) + jnp.sum(jnp.sin(p["W"]))
        flat0, unravel = ravel_pytree(params)
        H = np.asarray(jax.hessian(lambda x: loss(unravel(x)))(flat0), np.float64)
        got = np.asarray(ravel_pytree(hvp(loss, params, d))[0], np.float64)
        want = H @ np.asarray(ravel_pytree(d)[0], np.float64)
        hv.append(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12))
        psd.append(max(0.0, -lam.min()) / scale)
        idx = np.arange(int(np.size(params["W"])))
        F64 = F + 1e-3 * scale * np.eye(F.shape[0])  # positive definite, so the Schur complement is exact
        schur.append((schur_min_eig(F64, idx), np.linalg.eigvalsh(F64[np.ix_(idx, idx)]).min()))
    s_lhs, s_rhs = np.array(schur).T
    return [
        BoundRow("Rayleigh quotient >= lambda_min (Fisher)", "d^T F d/|d|^2 >= lambda_min", True,
                 np.array(rq_lo), count_violations(rq_lo, np.zeros(n), atol=1e-5)),
        BoundRow("Rayleigh quotient <= lambda_max (Fisher)", "d^T F d/|d|^2 <= lambda_max", True,
                 np.array(rq_hi), count_violations(rq_hi, np.zeros(n), atol=1e-5)),
        BoundRow("Lanczos top eigenvalue vs dense eigvalsh", f"relative error <= {LANCZOS_RTOL}", True,
                 np.array(lz) / LANCZOS_RTOL, count_violations(lz, np.full(n, LANCZOS_RTOL))),
        BoundRow("hvp vs jax.hessian", f"relative error <= {HVP_RTOL}", True,
                 np.array(hv) / HVP_RTOL, count_violations(hv, np.full(n, HVP_RTOL))),
        BoundRow("Fisher is PSD", "lambda_min(F) >= 0 (relative)", True, np.array(psd), count_violations(psd, np.zeros(n), atol=1e-5)),
        BoundRow("Schur complement min eig <= min eig of F_WW", "lambda_min(S_W) <= lambda_min(F_WW)", True,
                 ratios(s_lhs, s_rhs), count_violations(s_lhs, s_rhs, rtol=1e-4, atol=1e-6)),
    ]
