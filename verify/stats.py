"""Seed statistics: mean and a 95 % Student-t confidence interval over per-seed values, the OLS slope against
log2 of a size with its interval, and a difference of two groups pooled over bins of a covariate."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from verify.registry import Estimate


def over_seeds(values) -> Estimate:
    """Mean and 95 % t-interval of per-seed values (NaNs dropped; one value gives a zero-width interval)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), [])
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, mean, mean, v.tolist())
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Estimate(mean, mean - half, mean + half, v.tolist())


def slope_log2(x, y) -> Estimate:
    """OLS slope of y against log2(x) with a 95 % t-interval (per doubling of x)."""
    lx, yy = np.log2(np.asarray(x, float)), np.asarray(y, float)
    ok = np.isfinite(lx) & np.isfinite(yy)
    lx, yy = lx[ok], yy[ok]
    if lx.size < 3 or np.ptp(lx) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), [])
    res = stats.linregress(lx, yy)
    half = float(stats.t.ppf(0.975, lx.size - 2) * res.stderr)
    return Estimate(float(res.slope), float(res.slope - half), float(res.slope + half), yy.tolist())


def binned_difference(x_rl, y_rl, x_sft, y_sft, width: float) -> dict:
    """RL minus SFT of a metric within bins of log10(drift ratio) where both methods have >= 2 runs.

    Returns {"bins": [(lo, n_rl, n_sft, diff)], "diff": pooled mean of the per-bin differences, "se": its
    standard error (per-bin Welch variances averaged over bins), "low"/"high": its 95 % t-interval}."""
    lx_r, lx_s = np.log10(np.asarray(x_rl, float)), np.log10(np.asarray(x_sft, float))
    y_r, y_s = np.asarray(y_rl, float), np.asarray(y_sft, float)
    ok_r, ok_s = np.isfinite(lx_r) & np.isfinite(y_r), np.isfinite(lx_s) & np.isfinite(y_s)
    bins, diffs, vars_, dofs = [], [], [], []
    if ok_r.any() and ok_s.any():
        lo = math.floor(min(lx_r[ok_r].min(), lx_s[ok_s].min()) / width) * width
        hi = max(lx_r[ok_r].max(), lx_s[ok_s].max())
        while lo <= hi:
            a = y_r[ok_r & (lx_r >= lo) & (lx_r < lo + width)]
            b = y_s[ok_s & (lx_s >= lo) & (lx_s < lo + width)]
            if a.size >= 2 and b.size >= 2:
                d = float(a.mean() - b.mean())
                bins.append((float(lo), int(a.size), int(b.size), d))
                diffs.append(d)
                vars_.append(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
                dofs.append(a.size + b.size - 2)
            lo += width
    if not diffs:
        return {"bins": [], "diff": float("nan"), "se": float("nan"), "low": float("nan"), "high": float("nan")}
    diff = float(np.mean(diffs))
    se = float(math.sqrt(sum(vars_)) / len(diffs))
    half = float(stats.t.ppf(0.975, max(sum(dofs), 1))) * se
    return {"bins": bins, "diff": diff, "se": se, "low": diff - half, "high": diff + half}


def log2_ratio(comparator: float, rl: float) -> float:
    """log2(comparator / rl) of two non-negative statistics, the per-seed statistic of the claims that compare a
    comparator's size with RL's (inf or NaN where one is 0: the interval leaves those out, and its unit count shows
    it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log2(np.float64(comparator) / np.float64(rl)))
