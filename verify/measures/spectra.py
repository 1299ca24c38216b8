"""Spectral measures of weight updates (Gate II, C8, C10, C11, C16), fp64: the perturbation bounds on a real
(W0, dW), normalised spectral shift and principal angles, the principal energy fraction against its isotropic
level, and the share of an update's energy in its top-r singular directions. Views: continuous quantities use
the fp32 master weights (``weights.block_pairs(..., master=True)``)."""

from __future__ import annotations

import jax
import numpy as np

from theory import spectral as S
from verify.measures.weights import block_pairs

K = 4  # top-k singular subspace (capped at min(m, n))
BOUNDS = ("weyl", "mirsky", "ky_fan", "wedin_safe", "wedin_paper")
ISOTROPIC_DRAWS = 32  # Gaussian matrices per shape for the isotropic energy-share reference


def top_k(W) -> int:
    """The k of the top-k subspaces of a matrix: min(K, m, n)."""
    return min(K, *W.shape)


def bound_values(W0, dW, dW_rhs=None) -> dict[str, tuple[float, float]]:
    """(lhs, rhs) of every Gate II bound, in fp64. ``dW_rhs`` (negative control) replaces dW in the rhs only."""
    k = top_k(W0)
    out = {}
    with jax.enable_x64(True):
        W0, dW = np.asarray(W0, np.float64), np.asarray(dW, np.float64)
        real = {"weyl": S.weyl(W0, dW), "mirsky": S.mirsky(W0, dW), "ky_fan": S.ky_fan(W0, dW, k),
                "wedin_safe": S.wedin_safe(W0, dW, k), "wedin_paper": S.wedin_paper(W0, dW, k)}
        if dW_rhs is None:
            alt = real
        else:
            d2 = np.asarray(dW_rhs, np.float64)
            alt = {"weyl": S.weyl(W0, d2), "mirsky": S.mirsky(W0, d2), "ky_fan": S.ky_fan(W0, d2, k),
                   "wedin_safe": S.wedin_safe(W0, d2, k), "wedin_paper": S.wedin_paper(W0, d2, k)}
        for name in BOUNDS:
            out[name] = (float(real[name][0]), float(alt[name][1]))
    return out


def spectral_drift(pairs: dict) -> tuple[float, float]:
    """(NSS, largest top-k principal angle in degrees over U and V), each averaged over the matrices."""
    nss, ang = [], []
    with jax.enable_x64(True):
        for W0, W1 in pairs.values():
            W0, W1 = np.asarray(W0, np.float64), np.asarray(W1, np.float64)
            nss.append(float(S.normalized_spectral_shift(W0, W1)))
            au, av = S.principal_angles(W0, W1, top_k(W0))
            ang.append(float(np.degrees(max(np.max(np.asarray(au)), np.max(np.asarray(av))))))
    return float(np.mean(nss)), float(np.mean(ang))


def drift(ctx, run) -> tuple[float, float]:
    """``spectral_drift`` of a run's block matrices on the fp32 master weights (memoised)."""
    return ctx.memo(("spectral_drift", run.directory.name), lambda: spectral_drift(block_pairs(ctx, run, master=True)))


def energy_ratio(pairs: dict) -> float:
    """Mean over matrices of principal energy fraction / k^2/(mn) (1 = isotropic update)."""
    vals = []
    with jax.enable_x64(True):
        for W0, W1 in pairs.values():
            W0, dW = np.asarray(W0, np.float64), np.asarray(W1 - W0, np.float64)
            k = top_k(W0)
            vals.append(float(S.principal_energy_fraction(W0, dW, k)) / S.principal_energy_random_level(*W0.shape, k))
    return float(np.nanmean(vals))


def rank_energy_share(dW, r: int) -> float:
    """Share of |dW|_F^2 in the top-r singular directions of dW (the best rank-r approximation's share, Eckart-Young),
    fp64; r is capped at min(m, n)."""
    dW = np.asarray(dW, np.float64)
    with jax.enable_x64(True):
        return float(S.top_k_energy_share(dW, min(int(r), *dW.shape)))


def isotropic_energy_share(m: int, n: int, r: int, draws: int = ISOTROPIC_DRAWS, seed: int = 0) -> float:
    """Mean top-r energy share of i.i.d. Gaussian m x n matrices (the reference of an update with no preferred
    directions); fixed seed, ``draws`` matrices."""
    rng = np.random.default_rng(seed)
    r = min(r, m, n)
    vals = []
    for _ in range(draws):
        s2 = np.linalg.svd(rng.standard_normal((m, n)), compute_uv=False) ** 2
        vals.append(s2[:r].sum() / s2.sum())
    return float(np.mean(vals))


def energy_curve(pairs: dict, rs) -> dict[int, float]:
    """{r: mean over block matrices of the top-r energy share of dW = W1 - W0}."""
    out = {}
    for r in rs:
        out[r] = float(np.mean([rank_energy_share(W1 - W0, r) for W0, W1 in pairs.values()]))
    return out


def isotropic_curve(pairs: dict, rs) -> dict[int, float]:
    """{r: mean over the same matrix shapes of the isotropic (Gaussian) top-r energy share}."""
    return {r: float(np.mean([isotropic_energy_share(*W0.shape, r) for W0, _ in pairs.values()])) for r in rs}


def ranks_for_energy(pairs: dict, share: float = 0.9) -> float:
    """Median over block matrices of the smallest r whose top-r singular directions hold ``share`` of |dW|_F^2."""
    need = []
    for W0, W1 in pairs.values():
        s2 = np.linalg.svd(np.asarray(W1 - W0, np.float64), compute_uv=False) ** 2
        c = np.cumsum(s2) / max(s2.sum(), 1e-300)
        need.append(int(np.searchsorted(c, share) + 1))
    return float(np.median(need))
