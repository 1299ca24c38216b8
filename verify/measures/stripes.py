"""Consensus maps and stripes (C3): the share of runs that changed each weight, the lines (rows of Q, K, V;
columns of O) whose consensus ratios the stripe statistic compares, and shuffled line counts (uniform or within
ULP strata). consistency.stripes decides against the magnitude-matched null of ``theory.null``
(``verify.measures.nulls.stripe_z``). Matrices are in the (out, in) layout, so a row is an output unit."""

from __future__ import annotations

import numpy as np

STRIPE_AXES = {"attn/q": 1, "attn/k": 1, "attn/v": 1, "attn/o": 0}  # mean over axis 1 = row ratios, 0 = column ratios


def consensus(masks: list[dict]) -> dict[str, np.ndarray]:
    """Consensus map C_ij: the share of runs in which weight (i, j) changed (docs/science.md section 4)."""
    return {n: np.mean([m[n] for m in masks], axis=0) for n in masks[0]}


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
