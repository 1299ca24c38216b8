"""Masks of weights (C1, C3, C11): which block weights a run changed in its released bf16 export, the principal
and low-magnitude masks of the base, the share of changed weights inside a mask against its density, ULP
strata (weights of equal bf16 half-ULP, so an equal visibility threshold, claim C9), and the magnitude-matched null
(``theory.null``): one null draw of a run's changed mask, and the principal overlap beyond the null's expectation.

Views: changed masks compare the released base with the export of a snapshot (bf16 bits,
``theory.precision.changed_mask_bitwise``; an fp16_master run's fp16 export by value, ``changed_mask_fp16``); masks
come from the released base; block matrices only."""

from __future__ import annotations

import numpy as np

from theory import spectral as S
from theory.precision import (
    change_probability_from_regime,
    changed_mask_bitwise,
    changed_mask_fp16,
    half_ulp_bf16,
    overlap_within_strata,
    predicted_overlap,
)
from theory.null import magnitude_null, null_mask, null_rng
from toy_models.storage import MASTER_EXPORTS
from verify.measures.spectra import top_k
from verify.measures.weights import block_pairs

ALPHA = 0.5  # share kept by the principal and the low-magnitude masks
MIN_STRATUM = 16  # a ULP stratum holds at least this many weights (smaller ones merge with a neighbour)


def changed(ctx, run, step="final") -> dict[str, np.ndarray]:
    """{block matrix: bool changed mask}: the released base against the export of snapshot ``step`` (memoised): bf16
    bits for every mode but fp16_master, whose fp16 export is compared by value (``changed_mask_fp16``: rounding it
    to bf16 would hide most of its changes)."""
    probe = changed_mask_fp16 if MASTER_EXPORTS.get(run.spec.train.precision) == "fp16" else changed_mask_bitwise

    def compute():
        return {n: probe(w0.astype(np.float32), w1.astype(np.float32)) for n, (w0, w1) in block_pairs(ctx, run, step).items()}

    return ctx.memo(("changed", run.directory.name, str(step)), compute)


def principal_and_low_magnitude(W0, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(principal mask: top ``alpha`` of the rank-k reconstruction of W0, low-magnitude mask: bottom ``alpha`` of |W0|)."""
    P = np.asarray(S.principal_mask(W0, top_k(W0), alpha))
    L = np.asarray(S.low_magnitude_mask(W0, alpha))
    return P, L


def base_masks(ctx, run, alpha: float = ALPHA) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{block matrix: (principal mask, low-magnitude mask)} of the released base of a run (memoised)."""
    return ctx.memo(("base_masks", run.directory.name, alpha),
                    lambda: {n: principal_and_low_magnitude(W0, alpha) for n, (W0, _) in block_pairs(ctx, run).items()})


def in_mask_share(changed: dict, masks: dict) -> tuple[float, float, float]:
    """Share of changed block weights in the principal mask and in the low-magnitude mask (pooled over the
    block matrices), each minus the pooled density of that mask (the random level, alpha), and the changed
    density."""
    n_ch = sum(int(changed[k].sum()) for k in changed)
    inter_p = sum(int((changed[k] & masks[k][0]).sum()) for k in changed)
    inter_l = sum(int((changed[k] & masks[k][1]).sum()) for k in changed)
    size = sum(changed[k].size for k in changed)
    dens_p = sum(int(masks[k][0].sum()) for k in changed) / size
    dens_l = sum(int(masks[k][1].sum()) for k in changed) / size
    if n_ch == 0:
        return float("nan"), float("nan"), 0.0
    return inter_p / n_ch - dens_p, inter_l / n_ch - dens_l, n_ch / size


def changed_count(pairs: dict) -> int:
    """Number of block weights whose bf16 bits changed between W0 and W1."""
    return sum(int(np.count_nonzero(changed_mask_bitwise(a, b))) for a, b in pairs.values())


def ulp_strata(w0, min_count: int = MIN_STRATUM) -> np.ndarray:
    """Stratum index per weight: weights of equal bf16 half-ULP (equal |w0| binade, so an equal visibility
    threshold, claim C9) share a stratum; strata with fewer than ``min_count`` weights are merged with the next
    larger-ULP one (a trailing small group with the previous one). Same shape as ``w0``, int64, from 0."""
    levels = half_ulp_bf16(np.asarray(w0, np.float64))
    uniq, inverse, counts = np.unique(levels.ravel(), return_inverse=True, return_counts=True)
    group = np.zeros(len(uniq), np.int64)
    g, run = 0, 0
    for i, c in enumerate(counts):
        group[i] = g
        run += c
        if run >= min_count:
            g, run = g + 1, 0
    if run and g > 0:  # the last group is too small: join it to the previous one
        group[group == g] = g - 1
    return group[inverse].reshape(np.shape(w0))


def strata(ctx, run) -> dict[str, np.ndarray]:
    """{block matrix: ``ulp_strata`` of the run's released base} (memoised)."""
    return ctx.memo(("strata", run.directory.name),
                    lambda: {n: ulp_strata(w0) for n, (w0, _) in block_pairs(ctx, run).items()})


def stratified_excess(ctx, run) -> tuple[dict, float]:
    """(overlap_within_strata of the run's changed block weights with the principal mask, the overlap excess a
    magnitude-only change model predicts: independent changes with the regime model's probability)."""
    region = {k: m[0] for k, m in base_masks(ctx, run).items()}
    w0 = {k: w for k, (w, _) in block_pairs(ctx, run).items()}
    strat = overlap_within_strata(changed(ctx, run), region, w0)
    r = run.regime
    p = {k: change_probability_from_regime(w0[k], run.spec.train.lr, max(run.summary["stopped_at"], 1),
                                           max(r["sign_consistency"] or 0.0, 1e-12), r.get("step_fraction") or 1.0)
         for k in w0}
    return strat, predicted_overlap(p, region)


def null_changed(ctx, run) -> dict[str, np.ndarray]:
    """{block matrix: one draw of the magnitude-matched null's changed mask fitted to the run's own changed mask}
    (``theory.null.null_mask``, generator ``null_rng(matrix, run seed)``; memoised): the effect a claim looks for is
    absent from it by construction, only the magnitude dependence of a bf16 change survives."""

    def compute():
        seed = run.spec.train.seed
        return {n: null_mask(w0, changed(ctx, run)[n], null_rng(n, seed)) for n, (w0, _) in block_pairs(ctx, run).items()}

    return ctx.memo(("null_changed", run.directory.name), compute)


NULL_DRAWS = 8  # the excess reads the null's expectation only; a few draws keep the pooled RatioNull well formed


def principal_null_excess(w0s: dict, changed: dict, principal: dict, seed: int = 0) -> dict[str, float]:
    """The principal overlap of a changed mask against the magnitude-matched null, pooled over the block matrices:
    {"observed": |C & P| / |C|, "null": the null's expected ratio (``theory.null.magnitude_null`` per matrix, pooled
    with ``+``), "excess": observed - null} (NaN when nothing changed). Inputs are {block matrix: array}; the
    expectation does not depend on ``seed`` (it seeds the draws only)."""
    total = None
    for n in changed:
        r = magnitude_null(w0s[n], changed[n], regions={"principal": principal[n]}, draws=NULL_DRAWS,
                           rng=null_rng(n, seed)).overlaps["principal"]
        total = r if total is None else total + r
    v = total.value()
    return {"observed": v.observed, "null": v.null, "excess": v.observed - v.null}


def null_excess(ctx, run, masks: dict | None = None, tag: str = "own") -> dict[str, float]:
    """``principal_null_excess`` of a run's changed mask (or of ``masks``, e.g. a null draw or a planted mask on the
    run's base, named by ``tag`` for the memo) against the principal mask of its released base (memoised)."""

    def compute():
        w0s = {n: w0 for n, (w0, _) in block_pairs(ctx, run).items()}
        principal = {n: m[0] for n, m in base_masks(ctx, run).items()}
        return principal_null_excess(w0s, changed(ctx, run) if masks is None else masks, principal, run.spec.train.seed)

    return ctx.memo(("null_excess", run.directory.name, tag), compute)
