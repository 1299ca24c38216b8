"""Planted changed masks on the real matrices' shapes and ULP strata: masks that avoid the principal weights,
masks thinned inside a region (avoidance within strata), shuffled masks, masks whose overlap across runs comes
from magnitude alone or also from a shared preferred set, stripes on the paper's axes or the other one, nested
(stable) or redrawn (unstable) masks over training, and the synthetic edited/reference masks of C12."""

from __future__ import annotations

import numpy as np

from verify.measures.frames import region_excess
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


def shuffled_lines(masks: dict, seed: int) -> dict:
    """Every mask with its rows and its columns permuted (one generator for all matrices in order): the same
    row and column ratios in other places."""
    rng = np.random.default_rng(seed)
    return {n: m[rng.permutation(m.shape[0])][:, rng.permutation(m.shape[1])] for n, m in masks.items()}


def planted_edit(strata: dict, edited: list[str], seed: int, moved: bool) -> tuple[list, list, float, float]:
    """Inputs of the C12 rule on synthetic masks with a shared preferred set: three references and one 'edited'
    run whose masks in the ``edited`` matrices are shuffled (``moved``: the preferred set moved away, as the
    paper says a reparametrisation does) or kept (the preferred set stays in place). Returns (per-reference
    excess in the edited matrices, in the untouched ones, mean excess of reference pairs in each)."""
    shapes = {n: s.shape for n, s in strata.items()}
    refs = planted_masks(strata, shapes, 4, seed=seed, shared=0.8)
    run = dict(refs.pop())
    rng = np.random.default_rng(seed + 1)
    if moved:
        for n in edited:
            run[n] = rng.permutation(run[n].ravel()).reshape(run[n].shape)
    untouched = [n for n in strata if n not in edited]
    ref_e = np.mean([region_excess(refs[i], refs[j], strata, strata, edited)[0] for i in range(3) for j in range(i + 1, 3)])
    ref_u = np.mean([region_excess(refs[i], refs[j], strata, strata, untouched)[0] for i in range(3) for j in range(i + 1, 3)])
    e = [region_excess(run, r, strata, strata, edited)[0] for r in refs]
    u = [region_excess(run, r, strata, strata, untouched)[0] for r in refs]
    return e, u, float(ref_e), float(ref_u)
