"""Consensus maps and stripes (C3): the share of runs that changed each weight, and a permutation test of
whether the runs' changes concentrate in the same rows of Q, K, V and columns of O, against two nulls in
which each run's mask is shuffled independently: uniformly (independence) and within ULP strata (magnitude).
Matrices are in the (out, in) layout, so a row is an output unit."""

from __future__ import annotations

import numpy as np

N_PERMUTATIONS = 999
STRIPE_AXES = {"attn/q": 1, "attn/k": 1, "attn/v": 1, "attn/o": 0}  # mean over axis 1 = row ratios, 0 = column ratios


def consensus(masks: list[dict]) -> dict[str, np.ndarray]:
    """Consensus map C_ij: the share of runs in which weight (i, j) changed (docs/science.md section 4)."""
    return {n: np.mean([m[n] for m in masks], axis=0) for n in masks[0]}


def stripe_statistic(counts: np.ndarray, line_size: int) -> np.ndarray:
    """Variance over lines (rows or columns) of the consensus line ratio: ``counts`` (..., runs, lines) holds
    each run's number of changed weights per line of ``line_size`` weights; the consensus ratio of line i is
    mean over runs of count_i / line_size (the row or column ratio of the consensus map). Large when the runs'
    changes concentrate in the same lines. One value per leading index."""
    return (np.asarray(counts, np.float64) / line_size).mean(axis=-2).var(axis=-1)


def _lines(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` with its lines as rows: rows for ``axis`` 1 (row ratios), columns for ``axis`` 0."""
    return x if axis == 1 else x.T


def null_line_counts(mask, strata, axis: int, draws: int, rng) -> np.ndarray:
    """Changed weights per line (rows for ``axis`` 1, columns for 0) of ``draws`` random shuffles of ``mask``:
    uniform over the matrix (``strata`` None), or within ULP strata (the magnitude null). A shuffle puts the
    changed weights of a stratum on a uniformly random subset of that stratum's positions, so the counts per
    line are multivariate hypergeometric with one colour per line (exact, no explicit permutation)."""
    m = _lines(np.asarray(mask, bool), axis)
    if strata is None:
        return rng.multivariate_hypergeometric(np.full(m.shape[0], m.shape[1]), int(m.sum()), size=draws)
    st = _lines(np.asarray(strata), axis)
    out = np.zeros((draws, m.shape[0]), np.int64)
    for s in np.unique(st):
        where = st == s
        k = int(np.count_nonzero(m & where))
        if k:
            out += rng.multivariate_hypergeometric(where.sum(axis=1), k, size=draws)
    return out


def stripe_test(masks: list[dict], strata: dict, axes: dict = STRIPE_AXES, draws: int = N_PERMUTATIONS,
                seed: int = 0) -> dict:
    """Permutation test of stripes: the summed standardised stripe statistics of the matrices named in ``axes``
    (rows of Q, K, V; columns of O, in every block) against two nulls in which each run's mask is shuffled
    independently: uniformly (independence) and within ULP strata (magnitude). p = (1 + #null >= observed) /
    (1 + draws). Returns {'p_independence', 'p_magnitude', 'z_independence', 'z_magnitude', 'per_matrix'}."""
    rng = np.random.default_rng(seed)
    names = [n for n in masks[0] if n.split("/", 1)[-1] in axes]
    out = {"per_matrix": {}}
    for null in ("independence", "magnitude"):
        z_obs, z_null = 0.0, np.zeros(draws)
        for n in names:
            axis = axes[n.split("/", 1)[-1]]
            size = masks[0][n].shape[axis]
            obs = float(stripe_statistic(np.stack([_lines(m[n], axis).sum(axis=1) for m in masks]), size))
            counts = np.stack([null_line_counts(m[n], strata[n] if null == "magnitude" else None, axis, draws, rng)
                               for m in masks], axis=1)  # (draws, runs, lines)
            null_stats = stripe_statistic(counts, size)
            mu, sd = float(null_stats.mean()), float(null_stats.std()) or 1e-12
            z_obs += (obs - mu) / sd
            z_null += (null_stats - mu) / sd
            out["per_matrix"].setdefault(n, {})["statistic"] = obs
            out["per_matrix"][n][f"{null}_null_mean"] = mu
            out["per_matrix"][n][f"p_{null}"] = float((1 + np.sum(null_stats >= obs)) / (1 + draws))
        out[f"z_{null}"] = z_obs
        out[f"p_{null}"] = float((1 + np.sum(z_null >= z_obs)) / (1 + draws))
    return out
