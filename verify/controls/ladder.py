"""Planted inputs of the regime ladder (regime.ladder): bases whose drift falls with size at a chosen rate, and the
measured bases with their sizes permuted (no size effect by construction)."""

from __future__ import annotations

import math

import numpy as np

from verify.measures.ladder import PUBLISHED_SIZES


def planted_ladder(params, slope: float = -0.3, at_published: float = 0.2, noise: float = 0.1,
                   seed: int = 0) -> list[float]:
    """Drift ratios of bases of the given sizes that fall ``slope`` log2 per doubling of parameters
    to ``at_published`` at 1.5B parameters, with i.i.d. N(0, ``noise``) scatter in log2 (a planted size effect)."""
    rng = np.random.default_rng(seed)
    x = np.log2(np.asarray(params, np.float64)) - math.log2(PUBLISHED_SIZES["1.5B"])
    return (2.0 ** (math.log2(at_published) + slope * x + rng.normal(0.0, noise, x.size))).tolist()


def permuted_sizes(params, seed: int = 0) -> list[float]:
    """The bases' parameter counts in a seeded random order: any association of size with drift is gone by
    construction, the spread of sizes and drifts is kept."""
    return np.random.default_rng(seed).permutation(np.asarray(params, np.float64)).tolist()
