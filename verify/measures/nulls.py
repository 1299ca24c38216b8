"""Changed masks of runs from one base against the magnitude-matched null of ``theory.null`` (claims C3 and C4),
per block matrix: the pair-mean Jaccard beside the null's and the Bernoulli level, the consensus stripe statistic
in null standard deviations, and null draws of every run's mask (the claims' negative controls: masks with the
observed changed share in every equal-ULP stratum and nothing else of the run).

Every matrix draws from its own generator ``theory.null.null_rng(matrix, seed)``, so a statistic is a function of
the masks and the seed only. Matrices are in the (out, in) layout of ``verify.measures.weights``: a row is an
output unit.
"""

from __future__ import annotations

import math

import numpy as np

from theory import spectral as S
from theory.null import DRAWS, RunsNull, null_mask, null_rng, runs_null
from verify.measures.masks import changed
from verify.measures.stripes import STRIPE_AXES
from verify.measures.temporal import corr, profile_vector
from verify.measures.weights import block_pairs

LINES = {1: "rows", 0: "cols"}  # STRIPE_AXES' axis -> the line kind of RunsNull.stripes


def base_weights(ctx, run) -> dict[str, np.ndarray]:
    """{block matrix: the run's released bf16 base W0 (float64, (out, in))}."""
    return {n: w0 for n, (w0, _) in block_pairs(ctx, run).items()}


def set_nulls(w0: dict, masks: list[dict], seed: int = 0, draws: int = DRAWS) -> dict[str, RunsNull]:
    """{block matrix: ``theory.null.runs_null`` of the runs' changed masks of that matrix} (>= 2 runs)."""
    return {n: runs_null(w0[n], [m[n] for m in masks], draws=draws, rng=null_rng(n, seed)) for n in w0}


def jaccard_excess(nulls: dict[str, RunsNull]) -> dict[str, float]:
    """{matrix: pair-mean Jaccard of the runs' masks minus the null's pair-mean Jaccard (the magnitude-matched
    level)}; NaN where no pair changed anything."""
    return {n: float(r.mean_jaccard.excess) for n, r in nulls.items()}


def jaccard_levels(masks: list[dict], nulls: dict[str, RunsNull]) -> dict[str, dict[str, float]]:
    """{matrix: {'jaccard': observed pair mean, 'null': the null's pair mean, 'bernoulli': pair mean of the
    independent-Bernoulli level pq / (p + q - pq) of the paper}}."""
    out = {}
    for n, r in nulls.items():
        bern = [S.jaccard_random_baseline(float(masks[i][n].mean()), float(masks[j][n].mean())) for i, j in r.jaccard]
        out[n] = {"jaccard": float(r.mean_jaccard.observed), "null": float(r.mean_jaccard.null),
                  "bernoulli": float(np.nanmean(bern))}
    return out


def stripe_z(nulls: dict[str, RunsNull], axes: dict = STRIPE_AXES) -> tuple[float, dict[str, float]]:
    """The consensus stripe statistic in null standard deviations: per matrix named in ``axes`` (rows of Q, K, V;
    columns of O; every block) z = (observed - mean of the null draws) / SD of the null draws, combined over the M
    matrices by Stouffer's sum / sqrt(M) (the null draws of different matrices are independent, so the combined z
    has null SD 1). Returns (combined z, {matrix: z}); NaN when no matrix has a finite z."""
    per = {}
    for n, r in nulls.items():
        axis = axes.get(n.split("/", 1)[-1])
        if axis is None:
            continue
        v = r.stripes[LINES[axis]]
        d = np.asarray(v.draws, np.float64)
        d = d[np.isfinite(d)]
        sd = float(d.std()) if d.size else float("nan")
        per[n] = (v.observed - float(d.mean())) / sd if d.size and sd > 0 else float("nan")
    z = [x for x in per.values() if math.isfinite(x)]
    return (float(np.sum(z) / math.sqrt(len(z))) if z else float("nan")), per


def null_masks(w0: dict, masks: list[dict], seed: int) -> list[dict]:
    """Every run's mask of every matrix replaced by one ``theory.null.null_mask`` draw fitted to it (run r of
    matrix n draws from ``null_rng(f'{n}#{r}', seed)``): the effect of C3 absent by construction."""
    return [{n: null_mask(w0[n], m[n], null_rng(f"{n}#{r}", seed)) for n in w0} for r, m in enumerate(masks)]


def null_profile_min_corr(ctx, run, steps: list[int], first_step: float, w0: dict, seed: int) -> float:
    """C4's statistic on null draws: at every snapshot step t (the last = final) one null draw of the run's changed
    mask, fitted to that snapshot's own mask and drawn independently of the others; the smallest Pearson
    correlation, over t >= ``first_step``, of the draw's row/column profile with the final draw's (NaN -> -1)."""
    profiles = {t: profile_vector({n: null_mask(w0[n], m, null_rng(f"{n}@{t}", seed)) for n, m in changed(ctx, run, t).items()})
                for t in steps}
    final = profiles[steps[-1]]
    vals = [corr(profiles[t], final) for t in steps if t >= first_step]
    return float(min(-1.0 if not math.isfinite(v) else v for v in vals)) if vals else float("nan")
