"""Per-step KL quantities of a run, read from its metrics.jsonl (computed inside the jitted step, see
``toy_models.rl``, ``toy_models.steps``): ``kl/step_exact_seq`` (exact KL(pi_t+1 || pi_t) summed over the
positions of a sampled sequence, mean over the batch), ``kl/fisher_quad_seq`` (1/2 D^T F D of the same step),
``kl/tilted_bound_seq`` (KL(q_tilde || pi_t), Prop 3.1) and ``kl/clip_bound_seq`` (E[T] max log-ratio)."""

from __future__ import annotations

import numpy as np

STEP_KL = "kl/step_exact_seq"


def series(run, key: str) -> np.ndarray:
    """The per-step values of metric ``key`` over the run's steps (step 0 left out), float64."""
    return np.array([r[key] for r in run.metrics() if r["step"] > 0 and key in r], np.float64)


def share_within(lhs, rhs) -> float:
    """Share of steps with lhs <= rhs (float round-off allowed)."""
    lhs, rhs = np.asarray(lhs), np.asarray(rhs)
    ok = np.isfinite(lhs) & np.isfinite(rhs)
    return float(np.mean(lhs[ok] <= rhs[ok] * (1 + 1e-6) + 1e-12)) if ok.any() else float("nan")


def median_ratio(lhs, rhs) -> float:
    """Median of lhs / rhs over steps where the bound is positive and finite."""
    ok = np.isfinite(rhs) & (rhs > 0)
    return float(np.median(lhs[ok] / rhs[ok])) if ok.any() else float("nan")


def bound_share(run, bound_key: str) -> float:
    """Share of the run's steps whose exact step KL is within the per-step bound ``bound_key``."""
    return share_within(series(run, STEP_KL), series(run, bound_key))


def bound_ratio(run, bound_key: str) -> float:
    """Median over the run's steps of exact step KL / the bound ``bound_key``."""
    return median_ratio(series(run, STEP_KL), series(run, bound_key))


def fisher_ratio(run) -> float:
    """Median over steps with a positive quadratic form of exact step KL / (1/2 D^T F D) (Prop 3.2)."""
    kl, quad = series(run, STEP_KL), series(run, "kl/fisher_quad_seq")
    ok = quad > 0
    return float(np.median(kl[ok] / quad[ok])) if ok.any() else float("nan")

