"""Planted weight updates and drifts: updates that live in or off the principal subspaces of a base matrix, an
SFT-like update that rotates them, the equality case of Weyl and Mirsky, sub-ULP against large noise, random
walks of Adam-like steps, and fp32 drifts of known size for the sparsity predictor."""

from __future__ import annotations

import numpy as np

from theory.precision import (
    changed_mask_bitwise,
    changed_mask_relative,
    half_ulp_bf16,
    half_ulp_rule,
    predict_sparsity_from_drift,
    to_bf16,
)
from verify.measures.spectra import energy_ratio, spectral_drift, top_k

PLANTED_SEEDS = tuple(range(6))  # synthetic controls use their own seeds (independent of the profile)
PLANT_GAP_SHARE = 0.5  # planted spectrum controls: |dW|_F = this share of gamma_k(W0), so no subspace swap


def planted(W0: np.ndarray, kind: str, scale: float, k: int, seed: int) -> np.ndarray:
    """A synthetic update dW for controls: 'principal' lies in span(U_k) x span(V_k) of W0,
    'off_principal' in the orthogonal complements, 'random' is isotropic Gaussian. Frobenius norm = scale."""
    rng = np.random.default_rng(seed)
    U, s, Vt = np.linalg.svd(W0, full_matrices=True)
    G = rng.standard_normal(W0.shape)
    if kind == "principal":
        d = U[:, :k] @ (U[:, :k].T @ G @ Vt[:k].T) @ Vt[:k]
    elif kind == "off_principal":
        Pu = np.eye(W0.shape[0]) - U[:, :k] @ U[:, :k].T
        Pv = np.eye(W0.shape[1]) - Vt[:k].T @ Vt[:k]
        d = Pu @ G @ Pv
    elif kind == "random":
        d = G
    else:
        raise ValueError(f"Unknown planted update kind {kind!r}.")
    return d / max(np.linalg.norm(d), 1e-300) * scale


def top_pair_planted(W0, frac: float = 0.1):
    """Equality case: dW = frac sigma_1 u_1 v_1^T raises sigma_1 by exactly |dW|_2 (Weyl and Mirsky tight)."""
    U, s, Vt = np.linalg.svd(W0, full_matrices=False)
    return frac * s[0] * np.outer(U[:, 0], Vt[0])


def planted_rotating(W0, scale: float, k: int, seed: int):
    """An SFT-like planted update touching the principal part: half of |dW|_F^2 rescales the top-k singular
    values (U_k diag(g) V_k^T), half rotates the top-k left subspace into its complement (U_perp A V_k^T)."""
    rng = np.random.default_rng(seed)
    U, s, Vt = np.linalg.svd(W0, full_matrices=True)
    Uk, Up, Vk = U[:, :k], U[:, k:], Vt[:k].T
    spec = Uk @ np.diag(rng.standard_normal(k)) @ Vk.T
    rot = Up @ rng.standard_normal((Up.shape[1], k)) @ Vk.T
    spec *= scale / np.sqrt(2) / np.linalg.norm(spec)
    rot *= scale / np.sqrt(2) / max(np.linalg.norm(rot), 1e-300)
    return spec + rot


def planted_spectrum(base_pairs: dict):
    """Per planted seed: (NSS, angle) of the rotating (SFT-like) and of the off-principal (RL-like) update of the
    same Frobenius norm PLANT_GAP_SHARE gamma_k(W0) on every base block matrix."""
    out = {"rot": ([], []), "off": ([], [])}
    for seed in PLANTED_SEEDS:
        for kind in ("rot", "off"):
            pairs = {}
            for i, (name, (W0, _)) in enumerate(base_pairs.items()):
                k = top_k(W0)
                s = np.linalg.svd(W0, compute_uv=False)
                scale = PLANT_GAP_SHARE * (s[k - 1] - (s[k] if k < len(s) else 0.0))
                d = (planted_rotating(W0, scale, k, 1000 * seed + i) if kind == "rot"
                     else planted(W0, "off_principal", scale, k, 1000 * seed + i))
                pairs[name] = (W0, W0 + d)
            nss, ang = spectral_drift(pairs)
            out[kind][0].append(nss)
            out[kind][1].append(ang)
    return out


def planted_energy_ratios(base_pairs: dict, kind: str) -> list[float]:
    """Per planted seed: ``energy_ratio`` of a planted ``kind`` update with |dW|_F = 0.01 |W0|_F on every base
    matrix."""
    return [energy_ratio({n: (W0, W0 + planted(W0, kind, 0.01 * np.linalg.norm(W0), top_k(W0), 1000 * s + i))
                          for i, (n, (W0, _)) in enumerate(base_pairs.items())}) for s in PLANTED_SEEDS]


def planted_sparsity(seed: int, rl_like: bool) -> float:
    """Sparsity of a synthetic pair: sub-ULP noise (RL-like, mostly invisible) or large noise (SFT-like)."""
    rng = np.random.default_rng(seed)
    w0 = to_bf16(rng.normal(0, 0.1, 4096)).astype(np.float32)
    d = rng.normal(0, 1e-5 if rl_like else 1e-2, w0.shape)
    w1 = to_bf16(w0 + d)
    return 1.0 - float(np.mean(changed_mask_bitwise(w0, w1)))


def sub_ulp_share(lr: float, steps: int = 21) -> float:
    """Sparsity of weights N(0, 0.1) after `steps` fp32-master steps of +-lr (Adam-like steps in random
    directions: a random walk of size lr * sqrt(steps); an odd count, so no walk returns exactly to 0), bf16 export."""
    rng = np.random.default_rng(0)
    w0 = to_bf16(rng.normal(0, 0.1, 4096)).astype(np.float32)
    d = lr * rng.choice([-1.0, 1.0], size=(steps,) + w0.shape).sum(axis=0)
    return 1.0 - float(np.mean(changed_mask_bitwise(w0, to_bf16(w0 + d))))


def planted_disagreement() -> float:
    """Share of weights on which the half-ULP rule disagrees with exact rounding for synthetic N(0, 1e-3) updates of
    N(0, 0.1) bf16 weights (it should be 0 up to ties)."""
    rng = np.random.default_rng(1)
    w0 = np.asarray(to_bf16(rng.normal(0, 0.1, 20000)), np.float64)
    d = rng.normal(0, 1e-3, w0.shape)
    return float(np.mean(half_ulp_rule(w0, d) != changed_mask_bitwise(w0, to_bf16(w0 + d))))


def planted_predictor(seed: int) -> tuple[list, list]:
    """(predicted, measured) sparsity for synthetic fp32-master drifts of growing size on N(0, 0.1) weights."""
    rng = np.random.default_rng(seed)
    w0 = np.asarray(to_bf16(rng.normal(0, 0.1, 4000)), np.float64)
    pred, meas = [], []
    for scale in (0.2, 0.5, 1.0, 2.0, 5.0):
        d = rng.normal(0, 1.0, w0.shape) * scale * half_ulp_bf16(w0)
        pred.append(predict_sparsity_from_drift(w0, d))
        meas.append(1.0 - float(np.mean(changed_mask_bitwise(w0, to_bf16(w0 + d)))))
    return pred, meas


def hand_made_probe_mismatches() -> int:
    """Mismatches of the eta = 1e-3 relative probe against known answers on hand-made pairs: 1 -> 1 + 2^-7 (one
    bf16 ULP: changed), 2 -> 2 (equal), +0 -> -0 (equal values: unchanged for the probe)."""
    return int(np.count_nonzero(changed_mask_relative(np.float32([1.0, 2.0, 0.0]), np.float32([1.0078125, 2.0, -0.0]))
                                != [True, False, False]))
