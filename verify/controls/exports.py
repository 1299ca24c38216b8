"""Planted inputs of the fp16-export counterfactual (precision.fp16_export): bf16 and fp16 export sparsity of a
synthetic base under an i.i.d. drift of a chosen size in half-ULPs of its RMS weight."""

from __future__ import annotations

import numpy as np

from theory.precision import changed_mask_bitwise, changed_mask_fp16, half_ulp_bf16, to_bf16

PUBLISHED_DRIFT = 0.4  # RMS drift of DeepScaleR-1.5B in half-ULPs of its RMS weight (docs/science.md section 7)


def planted_export_sparsity(seed: int, drift: float = PUBLISHED_DRIFT, n: int = 20000, sd: float = 0.02) -> tuple[float, float]:
    """(bf16-export sparsity, fp16-export sparsity) of N(0, ``sd``) weights rounded to bf16 (the base) after an
    i.i.d. Gaussian fp32 drift of ``drift`` half-ULPs of the RMS weight (published drift 0.4: about 0.73 and 0.18)."""
    rng = np.random.default_rng(seed)
    w0 = to_bf16(rng.normal(0.0, sd, n)).astype(np.float32)
    rms = float(np.sqrt(np.mean(w0.astype(np.float64) ** 2)))
    w1 = (w0 + rng.normal(0.0, drift * float(half_ulp_bf16(rms)), n)).astype(np.float32)
    return 1.0 - float(np.mean(changed_mask_bitwise(w0, to_bf16(w1)))), 1.0 - float(np.mean(changed_mask_fp16(w0, w1)))
