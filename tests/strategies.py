"""Shared hypothesis strategies: matrices with controlled spectra, bf16-representable floats.

Hypothesis cannot draw bf16 directly: draw float32 and round with ml_dtypes."""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

CI_DIMS = (1, 2, 3, 5, 8, 12)
"""Matrix dimensions the `ci` profile draws from: the theory functions compile once per shape (jit), so the
ci profile keeps to a few shapes (vectors, tiny, odd, square and non-square); `dev` draws every size."""


def dims(lo: int, hi: int):
    """A matrix dimension in [lo, hi]: any integer under the `dev` profile, one of CI_DIMS under `ci`."""
    if os.environ.get("THREEGATE_HYPOTHESIS_PROFILE", "ci") == "ci":
        allowed = [d for d in CI_DIMS if lo <= d <= hi] or [lo]
        return st.sampled_from(allowed)
    return st.integers(lo, hi)

shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@st.composite
def matrices(draw, min_dim: int = 1, max_dim: int = 12, scale_exp=(-6, 6)):
    """Float64 matrices with a drawn spectrum: generic, rank-deficient, repeated or clustered singular values."""
    m = draw(dims(min_dim, max_dim))
    n = draw(dims(min_dim, max_dim))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    r = min(m, n)
    kind = draw(st.sampled_from(["generic", "rank_deficient", "repeated", "clustered", "zero"]))
    if kind == "generic":
        s = np.sort(rng.uniform(0.1, 10.0, r))[::-1]
    elif kind == "rank_deficient":
        rank = draw(st.integers(0, r))
        s = np.concatenate([np.sort(rng.uniform(0.5, 5.0, rank))[::-1], np.zeros(r - rank)])
    elif kind == "repeated":
        s = np.full(r, rng.uniform(0.5, 5.0))
    elif kind == "clustered":
        base = rng.uniform(1.0, 5.0)
        s = np.sort(base + rng.uniform(0.0, 1e-6, r))[::-1]
    else:
        s = np.zeros(r)
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    scale = 10.0 ** draw(st.integers(*scale_exp))
    return (u * s) @ v.T * scale


def perturbations(shape, seed: int, scale: float) -> np.ndarray:
    """A Gaussian perturbation of a given shape and Frobenius norm ``scale``."""
    d = np.random.default_rng(seed).standard_normal(shape)
    return d / max(np.linalg.norm(d), 1e-300) * scale


bf16_finite = st.floats(
    min_value=float(np.float32(-3.0e38)), max_value=float(np.float32(3.0e38)), allow_nan=False, allow_infinity=False, width=32, allow_subnormal=True
).map(lambda x: float(np.float32(x).astype(ml_dtypes.bfloat16)))
"""Finite floats exactly representable in bf16 (subnormals and signed zeros included)."""

float32_any = st.floats(allow_nan=False, allow_infinity=False, width=32, allow_subnormal=True)
"""Finite float32 values of every magnitude, subnormals and signed zeros included."""
