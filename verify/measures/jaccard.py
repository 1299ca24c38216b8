"""Overlap of changed masks across runs (C3): pairwise Jaccard against two chance levels.

The Bernoulli level pq / (p + q - pq) is the paper's; the magnitude-matched level removes the path by which
runs whose updates are independent still overlap: a weight shows a change iff its drift reaches half its bf16
ULP, and the ULP grows with |w0|, so small weights change more often in every run. Within one ULP stratum of
one matrix (``masks.ulp_strata``) a run's changes are treated as a random subset; its rates are estimated
from each run's own mask.
"""

from __future__ import annotations

import numpy as np

from theory import spectral as S


def magnitude_baseline(mask_a, strata_a, mask_b, strata_b) -> float:
    """Jaccard expected if each weight i changes independently in run A with probability a(s_A(i)) and in run
    B with b(s_B(i)), where a(s) and b(s) are the changed shares of the runs within ULP stratum s:
    sum_i a_i b_i / sum_i (a_i + b_i - a_i b_i) (the large-size limit, as for the Bernoulli level). With one
    stratum this is exactly pq / (p + q - pq). NaN when neither mask changed anything."""
    ma, mb = np.asarray(mask_a, bool).ravel(), np.asarray(mask_b, bool).ravel()
    sa, sb = np.asarray(strata_a).ravel(), np.asarray(strata_b).ravel()
    pa = (np.bincount(sa, weights=ma) / np.bincount(sa))[sa]
    pb = (np.bincount(sb, weights=mb) / np.bincount(sb))[sb]
    union = float(np.sum(pa + pb - pa * pb))
    return float(np.sum(pa * pb)) / union if union > 0 else float("nan")


def jaccard_triplet(mask_a, mask_b, strata_a, strata_b) -> tuple[float, float, float]:
    """(Jaccard J(A, B), Bernoulli level pq / (p + q - pq), magnitude-matched level) of two changed masks
    (docs/science.md section 4; ``theory.spectral.jaccard`` and ``jaccard_random_baseline``)."""
    a, b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    j = float(S.jaccard(a, b))
    bern = float(S.jaccard_random_baseline(float(a.mean()), float(b.mean())))
    return j, bern, magnitude_baseline(a, strata_a, b, strata_b)


def pairwise_jaccard(masks: list[dict], strata: list[dict] | dict) -> dict[str, np.ndarray]:
    """{matrix: array (pairs, 3) of (J, Bernoulli level, magnitude level)} over every pair i < j of runs.
    ``strata``: one {matrix: strata} for all runs (same base) or one per run."""
    per_run = strata if isinstance(strata, list) else [strata] * len(masks)
    out = {}
    for name in masks[0]:
        rows = [jaccard_triplet(masks[i][name], masks[j][name], per_run[i][name], per_run[j][name])
                for i in range(len(masks)) for j in range(i + 1, len(masks))]
        out[name] = np.asarray(rows, np.float64).reshape(-1, 3)
    return out


def excess_by_matrix(table: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Per matrix, the pair-mean (J - Bernoulli level) and (J - magnitude level), NaN pairs dropped."""
    bern = [float(np.nanmean(t[:, 0] - t[:, 1])) for t in table.values()]
    mag = [float(np.nanmean(t[:, 0] - t[:, 2])) for t in table.values()]
    return bern, mag


def excess_by_pair(table: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Per pair, the matrix-mean (J - Bernoulli level) and (J - magnitude level)."""
    stack = np.stack(list(table.values()))  # (matrices, pairs, 3)
    return (np.nanmean(stack[:, :, 0] - stack[:, :, 1], axis=0).tolist(),
            np.nanmean(stack[:, :, 0] - stack[:, :, 2], axis=0).tolist())


MIN_EXCESS = 0.02  # the least excess Jaccard read as overlap beyond chance (the C3 and C12 rules)
