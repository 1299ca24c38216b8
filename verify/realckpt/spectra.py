"""Spectral metrics of one matrix pair from Gram matrices and top-k factors (docs/science.md section 4, C10, C11).

With T the tall orientation of W0 (``stream``), T0 = U S V^T, C = T0^T dT and G_dW = dT^T dT accumulated in one
pass, everything below needs no further pass over the data:
- principal energy at every k of the sweep: U_K = T0 V_K S_K^-1, so U_K^T dT V_K = S_K^-1 V_K^T C V_K (K x K) and
  the share of ||dW||_F^2 inside the top-k subspaces on both sides is ||M[:k, :k]||_F^2 / ||dW||_F^2 for every
  k <= K at once; its isotropic level is k^2 / (mn) (``theory.spectral.principal_energy_random_level``) and its
  isotropic range follows from ||U_k^T G V_k||_F^2 ~ chi^2 with k^2 degrees of freedom;
- the spectrum of the tuned matrix from G1 = G0 + C + C^T + G_dW, and of dW from G_dW.
"""

from __future__ import annotations

import math

import numpy as np

NUMERICAL_RANK = 1e-7
"""A singular value below this times sigma_1 is beyond what the float64 Gram route resolves (sqrt(eps64)):
energies at a k that reaches it are not reported."""


def energy_sweep(Z0: np.ndarray, s0: np.ndarray, C: np.ndarray, d2: float, ks, m: int, n: int) -> list[dict]:
    """Principal energy share of dW at each k of ``ks`` (clipped to min(m, n) and to the K columns of Z0).

    Returns [{k, energy, isotropic, ratio}] with energy = ||U_k^T dW V_k||_F^2 / ||dW||_F^2 (None when dW = 0 or
    sigma_k of W0 is below NUMERICAL_RANK sigma_1), isotropic = k^2 / (mn), ratio = energy / isotropic."""
    K = Z0.shape[1]
    M = (Z0.T @ C @ Z0)
    with np.errstate(divide="ignore", invalid="ignore"):
        M = M / s0[:K, None]
    cum = np.cumsum(np.cumsum(M * M, axis=0), axis=1)  # cum[i, j] = sum of M[:i+1, :j+1]^2
    out = []
    for k in ks:
        ke = min(int(k), min(m, n), K)
        iso = ke * ke / (m * n)
        ok = d2 > 0 and s0[0] > 0 and s0[ke - 1] >= NUMERICAL_RANK * s0[0]
        e = float(cum[ke - 1, ke - 1] / d2) if ok else None
        out.append({"k": ke, "energy": e, "isotropic": iso, "ratio": e / iso if e is not None else None})
    return out


def isotropic_energy_range(m: int, n: int, k: int, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` range of the principal energy share of an isotropic Gaussian dW at rank k:
    k^2/(mn) times the chi^2_{k^2} quantiles over k^2 (fixed subspaces, ||dW||_F^2 ~ mn sigma^2)."""
    import scipy.stats  # a heavy import, not needed on the sparsity-only path

    dof = k * k
    lo, hi = scipy.stats.chi2.ppf([(1 - level) / 2, (1 + level) / 2], dof) / dof
    iso = dof / (m * n)
    return float(iso * lo), float(iso * hi)


def dw_structure(sD: np.ndarray, k: int, m: int, n: int) -> dict:
    """Structure of dW from its singular values: ||dW||_2, share of ||dW||_F^2 in the top 1 and top k singular
    directions, the rank that holds 90 % of it, stable rank ||dW||_F^2 / ||dW||_2^2, and the top-1 share of an
    isotropic Gaussian dW of that shape, (sqrt m + sqrt n)^2 / (mn) (Marchenko-Pastur edge). None for dW = 0."""
    e = np.asarray(sD, np.float64) ** 2
    total = float(e.sum())
    iso1 = (math.sqrt(m) + math.sqrt(n)) ** 2 / (m * n)
    if total <= 0:
        return dict(dw_norm2=0.0, dw_top1_share=None, dw_topk_share=None, dw_rank90=None, dw_stable_rank=None,
                    dw_top1_isotropic=iso1)
    cum = np.cumsum(e) / total
    return dict(dw_norm2=float(sD[0]), dw_top1_share=float(e[0] / total), dw_topk_share=float(cum[min(k, e.size) - 1]),
                dw_rank90=int(np.searchsorted(cum, 0.9 - 1e-12) + 1), dw_stable_rank=float(total / e[0]),
                dw_top1_isotropic=iso1)


def spectral_residual(s0: np.ndarray, s1: np.ndarray, d2: float, m: int, n: int) -> tuple[float | None, float]:
    """(||sigma(W1) - sigma(W0)||_2 / ||dW||_F, its isotropic level 1 / sqrt(max(m, n))).

    To first order sigma_i moves by u_i^T dW v_i; for an isotropic dW the r = min(m, n) such terms carry r / (mn)
    of ||dW||_F^2 in expectation, so the share of the update that reaches the spectrum is 1 / sqrt(max(m, n))."""
    level = 1.0 / math.sqrt(max(m, n))
    if d2 <= 0:
        return None, level
    return float(np.linalg.norm(s1 - s0) / math.sqrt(d2)), level


def intruders(Z0: np.ndarray, Z1: np.ndarray, threshold: float) -> int:
    """Number of tuned top-k singular vectors (columns of Z1) whose largest |cosine| with the base's top-K vectors
    (columns of Z0, same side) is below ``threshold`` ("intruder dimensions")."""
    if Z1.shape[1] == 0:
        return 0
    return int(np.count_nonzero(np.max(np.abs(Z0.T @ Z1), axis=0) < threshold))


def reduced_factors(A0: np.ndarray, A1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal bases A0, A1 (m, k) written in a 2k-dimensional orthonormal basis of their joint span, with the
    same principal angles: (A0', A1') = ([I; 0], [P; T]) with P = A0^T A1 and T^T T = R^T R for the residual
    R = A1 - A0 P (T = Lambda^1/2 V^T from R^T R = V Lambda V^T). Passing these to
    ``theory.spectral.principal_angles_from_factors`` gives the angles of (A0, A1) from k x k products: its
    cosines are sigma(P) and its sines sigma(T) = sigma(R), as on the full factors."""
    k = A0.shape[1]
    P = A0.T @ A1
    R = A1 - A0 @ P
    lam, V = np.linalg.eigh(R.T @ R)
    T = np.sqrt(np.clip(lam, 0.0, None))[:, None] * V.T
    return np.vstack([np.eye(k), np.zeros((k, k))]), np.vstack([P, T])
