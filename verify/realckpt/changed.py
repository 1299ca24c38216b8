"""The relative change probe on bf16 bit patterns, shared by the full analysis (``tensor``) and the sparsity-only
pass (``sparsity``) so that neither imports the other (docs/science.md claim C2)."""

from __future__ import annotations

import numpy as np

from verify.realckpt import stream as St

TIGHT_ETA = 2.0**-8
"""Below this eta the relative probe is bitwise inequality of bf16 values (theory.precision)."""


def relative_changed(b0: np.ndarray, b1: np.ndarray, eta: float) -> np.ndarray:
    """The relative probe |w1 - w0| <= eta max(|w0|, |w1|) (negated) on bf16 bit patterns: from the bits for
    eta < 2^-8, from float64 values otherwise."""
    if eta < TIGHT_ETA:
        return St.changed_bits(b0, b1)
    a, b = St.bits_to_float32(b0).astype(np.float64), St.bits_to_float32(b1).astype(np.float64)
    return ~(np.abs(b - a) <= eta * np.maximum(np.abs(a), np.abs(b)))
