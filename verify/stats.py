"""Seed statistics: mean and a 95 % Student-t confidence interval over per-seed values, the OLS slope against
log2 of a size with its interval, and the per-bin differences of two groups over bins of a covariate (pooled by
``verify.rules.Interval.pooled``)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from verify.registry import Estimate
from verify.rules import Interval


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


def slope_log2(x, y) -> Interval:
    """OLS slope of y against log2(x) (per doubling of x): an ``Interval`` whose units are the points (runs), with
    the regression's standard error and n - 2 degrees of freedom; fewer than 3 points or one x: empty (NaN)."""
    lx, yy = np.log2(np.asarray(x, float)), np.asarray(y, float)
    ok = np.isfinite(lx) & np.isfinite(yy)
    lx, yy = lx[ok], yy[ok]
    if lx.size < 3 or np.ptp(lx) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), ())
    res = stats.linregress(lx, yy)
    return Interval(float(res.slope), float(res.stderr), float(lx.size - 2), tuple(yy.tolist()))


class Bin(NamedTuple):
    """One drift bin of ``binned_difference``: its lower log10 edge, the runs of each method in it, the RL-minus-SFT
    difference of means, that difference's Welch variance (var_rl / n_rl + var_sft / n_sft) and its
    Welch-Satterthwaite degrees of freedom (n_rl + n_sft - 2 when both variances are 0)."""

    lo: float
    n_rl: int
    n_sft: int
    diff: float
    variance: float
    df: float


def binned_difference(x_rl, y_rl, x_sft, y_sft, width: float) -> list[Bin]:
    """RL minus SFT of a metric within bins of log10(drift ratio) ``width`` decades wide, in every bin where both
    methods have >= 2 runs: the per-bin differences and Welch variances that ``verify.rules.Interval.pooled``
    pools with random effects (runs with a non-finite x or y left out)."""
    lx_r, lx_s = np.log10(np.asarray(x_rl, float)), np.log10(np.asarray(x_sft, float))
    y_r, y_s = np.asarray(y_rl, float), np.asarray(y_sft, float)
    ok_r, ok_s = np.isfinite(lx_r) & np.isfinite(y_r), np.isfinite(lx_s) & np.isfinite(y_s)
    bins: list[Bin] = []
    if not (ok_r.any() and ok_s.any()):
        return bins
    lo = math.floor(min(lx_r[ok_r].min(), lx_s[ok_s].min()) / width) * width
    hi = max(lx_r[ok_r].max(), lx_s[ok_s].max())
    while lo <= hi:
        a = y_r[ok_r & (lx_r >= lo) & (lx_r < lo + width)]
        b = y_s[ok_s & (lx_s >= lo) & (lx_s < lo + width)]
        if a.size >= 2 and b.size >= 2:
            va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
            den = va**2 / (a.size - 1) + vb**2 / (b.size - 1)
            df = (va + vb) ** 2 / den if den > 0 else a.size + b.size - 2
            bins.append(Bin(float(lo), int(a.size), int(b.size), float(a.mean() - b.mean()), float(va + vb), float(df)))
        lo += width
    return bins


def log2_ratio(comparator: float, rl: float) -> float:
    """log2(comparator / rl) of two non-negative statistics, the per-seed statistic of the claims that compare a
    comparator's size with RL's (inf or NaN where one is 0: the interval leaves those out, and its unit count shows
    it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log2(np.float64(comparator) / np.float64(rl)))
