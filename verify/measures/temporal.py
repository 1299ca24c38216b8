"""Stability of the changed mask over training (C4): the row/column profile of the mask at each snapshot
against the final one, Jaccard with the final mask and the share of the final changed set already present."""

from __future__ import annotations

import math

import numpy as np

from theory import spectral as S
from verify.measures.masks import changed


def profile_vector(maps: dict) -> np.ndarray:
    """Row and column update ratios of every block matrix, concatenated (docs/science.md section 4): the mean
    of each row and of each column of a changed mask (``theory.spectral.row_ratios`` / ``col_ratios``). A map of
    per-weight change probabilities gives the expected ratios (plain means, so the values are not thresholded)."""
    return np.concatenate([np.concatenate([np.asarray(m, np.float64).mean(axis=1), np.asarray(m, np.float64).mean(axis=0)])
                           for m in maps.values()])


def pooled(masks: dict) -> np.ndarray:
    """All block-matrix masks as one (1, N) mask (pooled Jaccard and overlap)."""
    return np.concatenate([m.ravel() for m in masks.values()])[None, :]


def corr(a, b) -> float:
    """Pearson correlation of two profiles; NaN when either is constant."""
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def temporal_series(ctx, run, steps: list[int], strata: dict) -> dict:
    """Per snapshot step t of one run: correlation of the row/column profile with the final one (raw, and of
    the residual after the magnitude-expected profile), Jaccard of M_t with M_final, and the share of the final
    changed set already changed at t (overlap(M_t, M_final) = |M_t & M_T| / |M_T|)."""
    final = changed(ctx, run, steps[-1])

    def expected(masks):  # the profile each matrix would have if changes were random within ULP strata
        out = {}
        for n, m in masks.items():
            st = strata[n]
            out[n] = (np.bincount(st.ravel(), weights=m.ravel()) / np.bincount(st.ravel()))[st]
        return profile_vector(out)

    pf = profile_vector(final)
    rf = pf - expected(final)
    rows = []
    for t in steps:
        m = changed(ctx, run, t)
        pt = profile_vector(m)
        rows.append({"step": t, "corr": corr(pt, pf), "residual_corr": corr(pt - expected(m), rf),
                     "jaccard": float(S.jaccard(pooled(m), pooled(final))) if pooled(m).any() else 0.0,
                     "share_of_final": float(S.overlap(pooled(m), pooled(final))) if pooled(final).any() else float("nan"),
                     "density": float(pooled(m).mean())})
    return {"rows": rows}


def min_corr_from(rows: list[dict], first_step: float, key: str = "corr") -> float:
    """The smallest correlation with the final profile over snapshots at or after ``first_step`` (NaN -> -1)."""
    vals = [r[key] for r in rows if r["step"] >= first_step]
    return float(min(-1.0 if not math.isfinite(v) else v for v in vals)) if vals else float("nan")
