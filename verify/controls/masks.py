"""Planted changed masks on the real matrices' shapes and ULP strata: masks that avoid the principal weights,
masks thinned inside a region (avoidance within strata), shuffled masks, masks whose overlap across runs comes
from magnitude alone or also from a shared preferred set, stripes on the paper's axes or the other one, nested
(stable) or redrawn (unstable) masks over training, and the synthetic edited/reference masks of C12."""

from __future__ import annotations

import numpy as np

from verify.measures.masks import base_masks, null_changed
from verify.measures.stripes import STRIPE_AXES
from verify.measures.temporal import corr, profile_vector


def avoiding_principal(principal: dict, seed: int) -> dict:
    """A changed mask that avoids the principal mask: per matrix its complement intersected with a random half
    ({matrix: principal mask} in, one generator for all matrices in order)."""
    rng = np.random.default_rng(seed)
    return {n: ~P & (rng.random(P.shape) < 0.5) for n, P in principal.items()}


def thinned_in_region(masks: dict, regions: dict, share: float, seed: int) -> dict:
    """Planted avoidance within strata: each changed weight inside the region is unchanged again with probability
    ``share`` ({matrix: mask}, {matrix: region}; one generator for all matrices in order). Applied to a draw of the
    magnitude-matched null, every equal-ULP stratum keeps its magnitude dependence and loses the same share inside
    the region only."""
    rng = np.random.default_rng(seed)
    return {n: m & ~(regions[n] & (rng.random(m.shape) < share)) for n, m in masks.items()}


PLANTED_AVOIDANCE = 0.5  # share of a null draw's changed weights inside the principal mask undone (planted avoidance)


def avoidance_within_strata(ctx, run, share: float = PLANTED_AVOIDANCE) -> dict:
    """A planted avoidance within strata on a run's base: the run's magnitude-matched null draw
    (``verify.measures.masks.null_changed``) with ``share`` of its changed weights inside the principal mask unchanged
    again (``thinned_in_region``, seeded by the run's seed)."""
    principal = {n: m[0] for n, m in base_masks(ctx, run).items()}
    return thinned_in_region(null_changed(ctx, run), principal, share, run.spec.train.seed)


def planted_masks(strata: dict, shapes: dict, runs: int, seed: int, shared: float) -> list[dict]:
    """Synthetic changed masks on the real matrices: each weight changes with a rate set by its ULP stratum
    (from 0.85 for the smallest weights down to 0.35 for the largest: magnitude-driven overlap), and, if
    ``shared`` > 0, a fixed random 30 % of the weights additionally changes with probability ``shared`` in
    every run (overlap beyond magnitude)."""
    rng = np.random.default_rng(seed)
    out = [dict() for _ in range(runs)]
    for name, st in strata.items():
        levels = st.max() + 1
        rate = np.linspace(0.85, 0.35, levels)[st] if levels > 1 else np.full(st.shape, 0.6)
        preferred = rng.random(shapes[name]) < 0.3
        for r in range(runs):
            m = rng.random(shapes[name]) < rate
            if shared > 0:
                m |= preferred & (rng.random(shapes[name]) < shared)
            out[r][name] = m
    return out


def planted_stripes(strata: dict, shapes: dict, runs: int, seed: int, right_axis: bool) -> list[dict]:
    """Synthetic masks: magnitude-driven rates plus stripes (a fixed random quarter of the rows of Q/K/V and of
    the columns of O changes with probability 0.6 more) on the paper's axes, or on the other axis."""
    rng = np.random.default_rng(seed)
    out = [dict() for _ in range(runs)]
    for name, st in strata.items():
        shape = shapes[name]
        axis = STRIPE_AXES.get(name.split("/", 1)[-1], 1)
        if not right_axis:
            axis = 1 - axis
        levels = st.max() + 1
        rate = np.linspace(0.7, 0.3, levels)[st] if levels > 1 else np.full(shape, 0.5)
        if axis == 1:
            stripe = np.broadcast_to((rng.random(shape[0]) < 0.25)[:, None], shape)
        else:
            stripe = np.broadcast_to((rng.random(shape[1]) < 0.25)[None, :], shape)
        for r in range(runs):
            out[r][name] = (rng.random(shape) < rate) | (stripe & (rng.random(shape) < 0.6))
    return out


def planted_temporal(shapes: dict, steps: list[int], seed: int, stable: bool) -> list[dict]:
    """Synthetic per-step masks: weight ij drifts at rate v_ij = exp(a_i + b_j + noise) and is changed at t once
    v_ij t exceeds a threshold (nested, stable profile); unstable: row and column effects redrawn at each step."""
    rng = np.random.default_rng(seed)
    T = steps[-1]
    base = {n: (rng.standard_normal(s[0])[:, None], rng.standard_normal(s[1])[None, :], rng.standard_normal(s))
            for n, s in shapes.items()}
    out = []
    for t in steps:
        masks = {}
        for n, (a, b, e) in base.items():
            if not stable and t != T:
                a, b = rng.standard_normal(a.shape), rng.standard_normal(b.shape)
            masks[n] = np.exp(a + b + 0.5 * e) * t / T > 1.0
        out.append(masks)
    return out


def planted_rows(shapes: dict, steps: list[int], seed: int, stable: bool) -> list[dict]:
    """Per step of ``planted_temporal``: {'step', 'corr': correlation of its row/column profile with the final one}."""
    masks = planted_temporal(shapes, steps, seed, stable)
    pf = profile_vector(masks[-1])
    return [{"step": t, "corr": corr(profile_vector(m), pf)} for t, m in zip(steps, masks)]


def planted_edit_runs(strata: dict, edited: list[str], refs: int, edited_runs: int, seed: int,
                      moved: bool = True) -> tuple[list[dict], list[dict]]:
    """Synthetic reference and edited runs of C12 on the real matrices' strata: ``refs + edited_runs`` independent
    ``planted_masks`` draws that share one preferred set (overlap beyond chance in every matrix, as unedited RL runs
    from one base); in the last ``edited_runs`` the masks of the ``edited`` matrices are shuffled uniformly
    (``moved``: the preferred set and the magnitude pattern move away, as a reparametrisation of those matrices
    moves them in raw coordinates) or left in place. Returns (reference masks, edited masks)."""
    shapes = {n: s.shape for n, s in strata.items()}
    runs = planted_masks(strata, shapes, refs + edited_runs, seed=seed, shared=0.8)
    rng = np.random.default_rng(seed + 1)
    out = [dict(r) for r in runs[refs:]]
    if moved:
        for r in out:
            for n in edited:
                r[n] = rng.permutation(r[n].ravel()).reshape(r[n].shape)
    return runs[:refs], out
