"""Training curves and outcomes of a run, from its metrics.jsonl and summary: held-out gain and KL-to-base curves,
the first update's norm, the mean reward, frozen coordinates of a masked run, collapse and steps to a target
gain (C14, C15, C16, C12's SGD check, the random-base control)."""

from __future__ import annotations

import math

import numpy as np

from theory.precision import changed_mask_fp32
from toy_models.masks import build_masks, mask_density

COLLAPSE_DROP = 0.10  # collapsed: held-out accuracy or windowed training reward ends this far below the base accuracy


def gain_curve(run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, held-out accuracy gain over the base) at every evaluation of a run (step 0 included)."""
    recs = [m for m in run.metrics() if "heldout/mean" in m]
    base = next(m["heldout/mean"] for m in recs if m["step"] == 0)
    return np.array([m["step"] for m in recs]), np.array([m["heldout/mean"] - base for m in recs])


def kl_curve(run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, exact token-mean KL(pi || base) on the probe set) at every step (the paper's Figure 9 quantity)."""
    recs = [m for m in run.metrics() if "kl/to_base_exact" in m]
    return np.array([m["step"] for m in recs]), np.array([m["kl/to_base_exact"] for m in recs])


def kl_distance(kl, kl_dense) -> float:
    """Relative L1 distance of two KL-to-base curves on the same steps: sum |KL - KL_dense| / sum KL_dense."""
    kl, kl_dense = np.asarray(kl, float), np.asarray(kl_dense, float)
    n = min(len(kl), len(kl_dense))
    return float(np.sum(np.abs(kl[:n] - kl_dense[:n])) / max(np.sum(kl_dense[:n]), 1e-300))


def frozen_changes(run) -> tuple[int, int]:
    """(masked coordinates whose float32 master bits differ between the base and the final snapshot, masked
    coordinates): the first must be 0. The masks are rebuilt from the run's stored base as the trainer builds them."""
    base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
    masks = build_masks(base, run.spec.mask)
    bad = sum(int(np.count_nonzero(changed_mask_fp32(base[k], final[k]) & ~masks[k])) for k in base)
    return bad, sum(int(np.count_nonzero(~m)) for m in masks.values())


def mask_share(run) -> float:
    """Share of the block-matrix weights a masked run may train (its mask rebuilt from its stored base)."""
    return mask_density(build_masks(run.snapshot("base", master=True), run.spec.mask))["block_matrices"]


def first_update_norm(run) -> float:
    """Norm of the run's first update (metric norm/update at step 1; NaN if absent)."""
    return next((m.get("norm/update", float("nan")) for m in run.metrics() if m["step"] == 1), float("nan"))


def mean_reward(run) -> float:
    """Mean training reward over the run's steps (step 0 left out)."""
    return float(np.mean([m.get("reward/mean", np.nan) for m in run.metrics() if m["step"] > 0]))


def collapse_point(eval_steps, eval_gains, rewards=(), *, window: int = 10, base_acc: float = float("nan"),
                   drop: float = COLLAPSE_DROP, diverged_at: int | None = None) -> tuple[bool, int | None, str]:
    """(collapsed, onset step, cause) of one run. A run collapsed when
    - it diverged (NaN/Inf; onset: the first bad step), or
    - its held-out accuracy gain at the last evaluation is <= -``drop`` (onset: the first evaluation from which every
      later one is <= -drop), or
    - its mean training reward over the last complete window of ``window`` steps is <= ``base_acc`` - ``drop`` (the
      base's held-out accuracy estimates its expected reward: same tasks, same sampling; onset: the end of the first
      window from which every later complete window is below).
    The earliest onset of the criteria that fired is returned; cause is 'NaN', 'held-out', 'reward' or ''."""
    found = []
    if diverged_at is not None:
        found.append((int(diverged_at), "NaN"))
    g = np.asarray(eval_gains, float)
    if g.size and g[-1] <= -drop:
        below = g <= -drop
        first = int(np.flatnonzero(~below)[-1]) + 1 if (~below).any() else 0
        found.append((int(eval_steps[first]), "held-out"))
    r = np.asarray(rewards, float)
    n = r.size // window if window >= 1 else 0
    if n >= 1 and math.isfinite(base_acc):
        means = r[: n * window].reshape(n, window).mean(axis=1)
        below = means <= base_acc - drop
        if below[-1]:
            first = int(np.flatnonzero(~below)[-1]) + 1 if (~below).any() else 0
            found.append(((first + 1) * window, "reward"))
    if not found:
        return False, None, ""
    step, cause = min(found)
    return True, step, cause


def steps_to_target(eval_steps, eval_gains, target: float) -> int | None:
    """The first evaluation step whose held-out gain is >= ``target`` (None: never within the run)."""
    for s, g in zip(eval_steps, eval_gains):
        if g >= target:
            return int(s)
    return None
