"""Helpers shared by the claim modules: weight-matrix pairs of runs and planted updates for controls."""

from __future__ import annotations

import numpy as np

from toy_models.transformer import weight_matrices


def as_f64(flat: dict) -> dict[str, np.ndarray]:
    """Every tensor as float64 (bf16 values are exact in float64)."""
    return {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in flat.items()}


def matrix_pairs(run, step="final", master: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{matrix name: (W0, W1)} in (out, in) layout for the base and a snapshot of a run, float64.

    Embedding tables and the unembedding are included; vectors (biases, norms) are not."""
    w0 = weight_matrices(as_f64(run.snapshot("base", master=master)))
    w1 = weight_matrices(as_f64(run.snapshot(step, master=master)))
    return {k: (w0[k], w1[k]) for k in w0}


def block_matrices(pairs: dict) -> dict:
    """Only the transformer-block matrices (attention and MLP), the ones the paper's figures show."""
    return {k: v for k, v in pairs.items() if k.startswith("block")}


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
