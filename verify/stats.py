"""Seed statistics: mean and a 95 % Student-t confidence interval over per-seed values."""

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
