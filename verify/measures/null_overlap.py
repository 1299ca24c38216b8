"""Magnitude-corrected principal overlap (C11, C13): the share of a run's changed block weights that lie in the
principal mask of the base, minus the share the magnitude-matched null expects (``theory.null.magnitude_null``: the
same changed share in every equal-ULP stratum, nothing else), pooled over the block matrices by adding counts.
Negative: the run avoids principal weights beyond what their magnitude explains. Views: changed masks of the
released bf16 export, masks and strata of the released base (as ``verify.measures.masks``)."""

from __future__ import annotations

from theory.null import magnitude_null, null_mask, null_rng
from verify.measures.masks import base_masks, changed
from verify.measures.weights import block_pairs

NULL_DRAWS = 8  # the excess uses the null's expectation only; a few draws keep the pooled RatioNull well formed


def overlap_excess(w0s: dict, changed_masks: dict, principal: dict, seed: int = 0) -> float:
    """Pooled over the matrices of ``w0s`` ({name: W0}): |changed & principal| / |changed| minus the null's expected
    ratio (``RatioNull.value().excess``); NaN when nothing changed."""
    pooled = None
    for name in sorted(w0s):
        m = magnitude_null(w0s[name], changed_masks[name], {"principal": principal[name]}, draws=NULL_DRAWS,
                           rng=null_rng(name, seed))
        pooled = m.overlaps["principal"] if pooled is None else pooled + m.overlaps["principal"]
    return float(pooled.value().excess) if pooled is not None else float("nan")


def principal_excess_vs_null(ctx, run) -> float:
    """``overlap_excess`` of a run's changed block weights with the principal mask (alpha 0.5, k = 4) of its base
    (memoised)."""

    def compute():
        w0 = {n: w for n, (w, _) in block_pairs(ctx, run).items()}
        return overlap_excess(w0, changed(ctx, run), {n: m[0] for n, m in base_masks(ctx, run).items()})

    return ctx.memo(("principal_excess_vs_null", run.directory.name), compute)


def null_draw_excess(ctx, run, seed: int) -> float:
    """``overlap_excess`` of one draw of the magnitude-matched null of a run's changed mask (``theory.null.null_mask``):
    a changed mask in which avoidance beyond magnitude is absent by construction."""
    w0 = {n: w for n, (w, _) in block_pairs(ctx, run).items()}
    drawn = {n: null_mask(w0[n], c, null_rng(f"draw:{n}", seed)) for n, c in changed(ctx, run).items()}
    return overlap_excess(w0, drawn, {n: m[0] for n, m in base_masks(ctx, run).items()}, seed)

