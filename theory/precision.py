"""Gate III: bf16 precision (docs/science.md section 3 "Gate III", claims C2, C6, C9; section 4 metrics).

Contents
- rounding to bf16 (ml_dtypes reference, JAX cast), uint16 bit views, the bf16 ULP;
- rounding to fp16 (IEEE binary16), its ULP and the changed mask of an fp16 export (precision counterfactual);
- exact visibility of an update to a stored bf16 weight, the paper's half-ULP rule, and the exact
  threshold in each direction (so the rule's errors can be counted);
- the change probes: relative (paper, eta = 1e-3), absolute (Mukherjee et al., tol = 1e-5), bitwise;
  sparsity per tensor and per checkpoint; confusion of the absolute probe against bitwise truth;
- the two storage regimes: bf16 every step, and fp32 master weights with a bf16 export;
- regime numbers (docs/science.md section 7): step, drift and random-walk ratios to half a ULP, sign
  consistency, relative update norm, the fp32 bitwise probe, sparsity over all and over eligible
  (gradient-receiving) weights, and ``regime_numbers``, one JSON-ready call per run;
- sparsity predictors: per-weight drift (half-ULP rule), and a Gaussian model from lr, steps and sign
  consistency only (with its inverse), plus ``fit_quality``;
- overlap of a changed mask with a region within strata of equal bf16 ULP (claim C11 against rounding).

Numerics. The reference functions are numpy on float64 and are not jitted, on purpose: they must be
exact for ties and subnormals, and XLA on CPU flushes subnormal arithmetic results to zero (its cast
to bf16 keeps them). The ``*_jax`` functions are jitted and do what a JAX trainer does: float32
arithmetic, then a cast to bf16. bf16 values are compared as values (upcast to float64), never
with a float tolerance where bit equality is meant. Argument checks raise ``ValueError`` naming the
argument (theory/validate.py).

Conventions used throughout
- A "stored weight" ``w`` is a bf16 value. Inputs that are not bf16 are first rounded with
  ``to_bf16`` (identity for bf16 arrays and for float32 values exactly representable in bf16).
- Signed zeros: +0 and -0 are numerically equal and every probe here, like the paper's, reads them
  as unchanged. ``changed_mask_bitwise(..., zero_sign_counts=True)`` is the raw uint16 comparison.
- NaN and infinities are refused wherever a weight or an update is read.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from theory.validate import (
    require_finite,
    require_nonempty,
    require_open_unit,
    require_positive,
    require_same_shape,
)

__all__ = [
    "BF16",
    "MIN_NORMAL",
    "SUBNORMAL_SPACING",
    "to_bf16",
    "to_bf16_jax",
    "bf16_bits",
    "ulp_bf16",
    "FP16_MAX",
    "FP16_MIN_NORMAL",
    "FP16_SUBNORMAL_SPACING",
    "to_fp16",
    "ulp_fp16",
    "half_ulp_fp16",
    "changed_mask_fp16",
    "bf16_add",
    "is_visible",
    "half_ulp_rule",
    "visibility_threshold",
    "disagreement_kind",
    "changed_mask_relative",
    "changed_mask_absolute",
    "changed_mask_bitwise",
    "sparsity",
    "checkpoint_sparsity",
    "probe_confusion",
    "predicted_visible_share",
    "apply_bf16_every_step",
    "apply_fp32_master",
    "apply_bf16_every_step_jax",
    "apply_fp32_master_jax",
    "Z_QUARTILE",
    "SIGN_CONSISTENCY_SLACK",
    "half_ulp_bf16",
    "step_ratio",
    "drift_ratio",
    "walk_ratio",
    "sign_consistency",
    "relative_update_norm",
    "changed_mask_fp32",
    "sparsity_split",
    "predict_changed_from_drift",
    "predict_sparsity_from_drift",
    "change_probability_from_regime",
    "predict_sparsity_from_regime",
    "drift_for_sparsity",
    "change_probability_from_drift_distribution",
    "fit_quality",
    "overlap_within_strata",
    "predicted_overlap",
    "regime_numbers",
]

BF16 = ml_dtypes.bfloat16
MIN_NORMAL = 2.0**-126
"""Smallest normal bf16 magnitude (bf16 has float32's 8 exponent bits)."""
SUBNORMAL_SPACING = 2.0**-133
"""Spacing of bf16 subnormals (and of the lowest normal binade [2^-126, 2^-125)): 2^(-126-7)."""

# Kinds returned by ``disagreement_kind``.
AGREE, TIE_TO_EVEN, BELOW_POWER_OF_TWO, OTHER = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------
# Rounding, bits, ULP
# ----------------------------------------------------------------------------------------------


def _round_to_odd_float32(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """The exact real ``s + err`` (float64 ``s``, tiny ``err``) rounded to float32 by round to odd.

    Inexact results get an odd last bit (``err`` only decides exact float32 values), so a later
    round-to-nearest-even to any format with at least 2 fewer significand bits than float32 (bf16: 8,
    fp16: 11 against 24) equals a single rounding of the exact value (Boldo and Melquiond's round to odd).
    """
    s = np.asarray(s, dtype=np.float64)
    err = np.broadcast_to(np.asarray(err, dtype=np.float64), s.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        t = s.astype(np.float32)
        resid = s - t.astype(np.float64)
        r = np.where(resid != 0, resid, err)
        even = (t.view(np.uint32) & 1) == 0
        need = (r != 0) & even & np.isfinite(t) & ~np.isnan(r)
        toward = np.where(r > 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
        return np.where(need, np.nextafter(t, toward), t).astype(np.float32)


def _round_sum_to_bf16(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Correctly round the exact real ``s + err`` (float64 ``s``, tiny ``err``) to bf16.

    Round to odd from float64 to float32 (``_round_to_odd_float32``), then ml_dtypes'
    round-to-nearest-even from float32 to bf16: with float32 carrying more than 2 extra bits, this
    double rounding equals a single rounding of the exact value. ``err`` only breaks ties.
    """
    return _round_to_odd_float32(s, err).astype(BF16)


def to_bf16(x) -> np.ndarray:
    """Round to bf16 with round to nearest, ties to even (ml_dtypes reference), as a numpy bf16 array.

    float32 (and narrower float) inputs are cast by ml_dtypes. float64 inputs (Python floats too) are
    rounded once, correctly: ml_dtypes' own float64 cast goes through float32 and double-rounds
    (1 + 2^-8 + 2^-40 gives 1 instead of 1 + 2^-7); here float64 goes through a round-to-odd float32
    step, which makes the two roundings equal one. bf16 inputs are returned as a copy. NaN and inf
    pass through as the cast makes them; finite values at or above 2^128 - 2^119 overflow to inf.
    """
    a = np.asarray(x)
    require_nonempty("x", a)
    if a.dtype == BF16:
        return a.copy()
    if a.dtype == np.float64:
        return _round_sum_to_bf16(a, np.zeros_like(a))
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"Argument `x` must hold floating-point values, got dtype {a.dtype}.")
    return a.astype(np.float32).astype(BF16)


@jax.jit
def _to_bf16_jax(x):
    return jnp.asarray(x, jnp.float32).astype(jnp.bfloat16)


def to_bf16_jax(x) -> jax.Array:
    """JAX's cast ``jnp.asarray(x, float32).astype(bfloat16)`` (jitted); must equal ``to_bf16`` bit for bit
    on float32 inputs (docs/design.md, bf16 convention). float64 inputs are first rounded to float32."""
    require_nonempty("x", x)
    return _to_bf16_jax(x)


def bf16_bits(x) -> np.ndarray:
    """The uint16 bit patterns of ``to_bf16(x)`` (bf16 inputs unchanged): sign, 8 exponent, 7 mantissa bits."""
    return to_bf16(np.asarray(x)).view(np.uint16)


def ulp_bf16(x) -> np.ndarray:
    """bf16 unit in the last place of the binade of ``x`` (docs/science.md Gate III, claim C9).

    For |x| in [2^e, 2^(e+1)) with e >= -126: ULP = 2^(e-7), so ULP/|x| lies in (2^-8, 2^-7].
    For zero and subnormals (|x| < 2^-126) the spacing is fixed: ULP = 2^-133, the same as in the
    lowest normal binade. ``x`` is taken as given (not rounded to bf16 first); finite only. float64 out.
    """
    a = np.asarray(x)
    require_nonempty("x", a)
    require_finite("x", a)
    m = np.abs(a.astype(np.float64))
    _, e = np.frexp(m)  # m = f 2^e, f in [0.5, 1)  =>  binade exponent e - 1; frexp(0) gives e = 0
    e = np.where(m == 0, -126, np.maximum(e - 1, -126))
    return np.ldexp(1.0, e - 7)


# ----------------------------------------------------------------------------------------------
# fp16 (IEEE binary16): rounding, ULP and the changed mask of an fp16 export (precision counterfactual)
# ----------------------------------------------------------------------------------------------

FP16_MAX = 65504.0
"""Largest finite fp16 value, (2 - 2^-10) 2^15; finite values at or above 65520 round to inf."""
FP16_MIN_NORMAL = 2.0**-14
"""Smallest normal fp16 magnitude (5 exponent bits, bias 15)."""
FP16_SUBNORMAL_SPACING = 2.0**-24
"""Spacing of fp16 subnormals and of the lowest normal binade [2^-14, 2^-13): 2^(-14-10)."""


def to_fp16(x) -> np.ndarray:
    """Round to IEEE fp16 (binary16) with round to nearest, ties to even, as a numpy float16 array.

    float32 and narrower inputs (bf16 included, upcast exactly) use numpy's float32 -> float16 cast.
    float64 inputs (Python floats too) are rounded once, correctly: round to odd to float32 first
    (``_round_to_odd_float32``), then the float32 -> float16 cast, which together equal one rounding
    (a plain float64 -> float32 -> float16 cast can double-round: 1 + 2^-11 + 2^-40 would give 1).
    Subnormals (|x| < 2^-14, spacing 2^-24) are kept, finite values at or above 65520 in magnitude
    overflow to inf, signed zeros keep their sign, NaN and inf pass through as the cast makes them.
    Integer inputs are refused.
    """
    a = np.asarray(x)
    require_nonempty("x", a)
    if a.dtype == np.float16:
        return a.copy()
    if a.dtype == np.float64:
        with np.errstate(over="ignore"):
            return _round_to_odd_float32(a, np.zeros_like(a)).astype(np.float16)
    if not (np.issubdtype(a.dtype, np.floating) or a.dtype == BF16):
        raise ValueError(f"Argument `x` must hold floating-point values, got dtype {a.dtype}.")
    with np.errstate(over="ignore"):
        return a.astype(np.float32).astype(np.float16)


def ulp_fp16(x) -> np.ndarray:
    """fp16 unit in the last place of the binade of ``x`` (the fp16 analogue of ``ulp_bf16``), float64.

    For |x| in [2^e, 2^(e+1)) with -14 <= e <= 15: ULP = 2^(e-10), so ULP/|x| lies in (2^-11, 2^-10];
    for |x| < 2^-14 (zero and subnormals) the spacing is fixed: 2^-24. ``x`` is taken as given (not
    rounded first); finite values below the overflow threshold 65520 only.
    """
    a = np.asarray(x)
    require_nonempty("x", a)
    require_finite("x", a)
    m = np.abs(a.astype(np.float64))
    if np.any(m >= FP16_MAX + 16.0):
        raise ValueError(f"Argument `x` holds values of magnitude >= 65520, which overflow fp16 (largest {np.max(m):g}).")
    _, e = np.frexp(m)
    e = np.where(m == 0, -14, np.maximum(e - 1, -14))
    return np.ldexp(1.0, e - 10)


def half_ulp_fp16(w) -> np.ndarray:
    """Half the fp16 ULP of the stored value fp16(w) (the fp16 visibility threshold, as ``half_ulp_bf16``), float64.

    2^(e-11) for |fp16(w)| in [2^e, 2^(e+1)), e >= -14; 2^-25 for zero and subnormals. Values that
    overflow fp16 and NaN are refused.
    """
    a = np.asarray(w)
    require_nonempty("w", a)
    require_finite("w", a)
    h = to_fp16(a)
    if not np.all(np.isfinite(h)):
        raise ValueError("Argument `w` holds values that overflow fp16 (magnitude >= 65520).")
    return ulp_fp16(h.astype(np.float64)) / 2


def changed_mask_fp16(w0, w1) -> np.ndarray:
    """Changed mask of an fp16 export (precision counterfactual of claim C6): fp16(w0) != fp16(w1) as numbers.

    Both sides are rounded with ``to_fp16`` (inputs already fp16 are used as they are), then compared
    as values: +0 and -0 are equal (as in the bf16 probes); two values that overflow to the same
    infinity are equal, an overflow against a finite value is a change. NaN and inf inputs refused.
    """
    a = np.asarray(w0)
    b = np.asarray(w1)
    for name, x in (("w0", a), ("w1", b)):
        require_nonempty(name, x)
        require_finite(name, x)
    require_same_shape("w0", a, "w1", b)
    return to_fp16(a).astype(np.float64) != to_fp16(b).astype(np.float64)


def _stored(name: str, w) -> np.ndarray:
    """Finite, non-empty bf16 stored weights (inputs that are not bf16 are rounded). fp16 inputs are refused: an
    fp16 export rounded to bf16 silently loses its last 3 bits (compare fp16 values with ``changed_mask_fp16``, or
    call ``to_bf16`` first to ask what a bf16 export would show)."""
    a = np.asarray(w)
    if a.dtype == np.float16:
        raise ValueError(f"Argument `{name}` holds fp16 values; a bf16 function would round them to bf16 and lose "
                         "changes: compare an fp16 export with changed_mask_fp16, or round it with to_bf16 first.")
    require_nonempty(name, a)
    require_finite(name, a)
    b = to_bf16(a)
    require_finite(name, b)
    return b


def _same_shape(name_a: str, a, name_b: str, b) -> None:
    """Same shape, or one side a scalar (0-d) that broadcasts."""
    if np.ndim(a) and np.ndim(b):
        require_same_shape(name_a, a, name_b, b)


def _delta(name: str, d) -> np.ndarray:
    a = np.asarray(d)
    require_nonempty(name, a)
    require_finite(name, a)
    return a.astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Visibility of one update
# ----------------------------------------------------------------------------------------------


def bf16_add(w, d, exact: bool = True) -> np.ndarray:
    """The new stored value bf16(w + d) of a bf16 weight ``w`` after an update ``d``.

    ``exact=True``: the real sum w + d is rounded once to bf16 (float64 two-sum; the rounding error
    only breaks ties), so the result is correctly rounded for every float32/float64 ``d``.
    ``exact=False``: what a float32 trainer does: the sum is rounded to float32, then to bf16. This
    double rounding can lose an update just above half an ULP (w = 1, d = 2^-8 + 2^-30 stays 1).
    """
    wb = _stored("w", w)
    dd = _delta("d", d)
    _same_shape("w", wb, "d", dd)
    if exact:
        a = wb.astype(np.float64)
        s = a + dd
        bb = s - a
        err = (a - (s - bb)) + (dd - bb)  # Knuth two-sum: s + err == a + dd exactly
        return _round_sum_to_bf16(s, err)
    with np.errstate(over="ignore"):
        s32 = wb.astype(np.float32) + dd.astype(np.float32)
    return s32.astype(BF16)


def is_visible(w, d, exact: bool = True) -> np.ndarray:
    """Exact visibility of an update: bf16(w + d) != w for the stored bf16 value ``w``.

    The stored value is compared as a number (+0 and -0 equal; a zero that only changes sign is not a
    change). The sum is formed as in ``bf16_add`` (exact by default; ``exact=False`` for float32
    arithmetic). An update that overflows to inf is visible.
    """
    wb = _stored("w", w)
    new = bf16_add(wb, d, exact=exact)
    return new.astype(np.float64) != wb.astype(np.float64)


def half_ulp_rule(w, d) -> np.ndarray:
    """The paper's rule (Gate III, claim C9): the stored weight changes iff |d| >= ULP(w) / 2.

    Plain rule, no corrections, so its disagreement with ``is_visible`` can be measured. It is wrong in
    exactly two kinds of case (see ``disagreement_kind``): a tie |d| = ULP/2 on a weight with an even
    last mantissa bit (round half to even keeps w), and a step toward zero from a normal power of two
    (the spacing below 2^e is ULP/2, so any |d| in (ULP/4, ULP/2) is visible).
    """
    wb = _stored("w", w)
    dd = _delta("d", d)
    _same_shape("w", wb, "d", dd)
    return np.abs(dd) >= ulp_bf16(wb) / 2


def visibility_threshold(w, direction) -> tuple[np.ndarray, np.ndarray]:
    """Exact visibility threshold of a stored bf16 weight ``w`` for updates of sign ``direction`` (+1 / -1).

    Returns ``(gap, tie_visible)``: an update d with sign(d) = direction is visible iff
    |d| > gap, or |d| == gap and tie_visible. gap is half the distance to the neighbour in that
    direction: ULP(w)/2, except ULP(w)/4 when stepping toward zero from a normal power of two
    (|w| = 2^e, e > -126). Zero and subnormals: gap = 2^-134. At the largest finite bf16 stepping
    outward the neighbour is 2^128 (overflow to inf), gap = ULP/2. ``tie_visible`` is True iff w's
    last mantissa bit is odd (the tie then rounds to the even neighbour).
    """
    wb = _stored("w", w)
    dirn = np.asarray(direction)
    if dirn.size == 0 or not np.all((dirn == 1) | (dirn == -1)):
        raise ValueError("Argument `direction` must be +1 or -1 (elementwise).")
    wv = wb.astype(np.float64)
    bits = wb.view(np.uint16)
    u = ulp_bf16(wv)
    outward = (wv == 0) | (np.sign(wv) == dirn)
    exp_field = (bits >> 7) & 0xFF
    power_of_two = (exp_field > 1) & ((bits & 0x7F) == 0)
    gap = np.where(~outward & power_of_two, u / 4, u / 2)
    tie_visible = np.broadcast_to((bits & 1) == 1, gap.shape).copy()
    return gap, tie_visible


def disagreement_kind(w, d) -> np.ndarray:
    """Classify each (w, d) by how ``half_ulp_rule`` relates to exact rounding (``is_visible``).

    0 = agree; 1 = tie to even (|d| == ULP/2, rule says visible, w's last bit is even so w is kept);
    2 = below a power of two (step toward zero from |w| = 2^e, ULP/4 < |d| < ULP/2: visible, the rule
    says not); 3 = any other disagreement (never happens with exact arithmetic; kept as a check).
    """
    wb = _stored("w", w)
    dd = _delta("d", d)
    _same_shape("w", wb, "d", dd)
    rule = half_ulp_rule(wb, dd)
    exact = is_visible(wb, dd)
    u = ulp_bf16(wb)
    a = np.abs(dd)
    bits = wb.view(np.uint16)
    wv = wb.astype(np.float64)
    tie = rule & ~exact & (a == u / 2) & ((bits & 1) == 0)
    toward_zero = (wv != 0) & (np.sign(dd) == -np.sign(wv))
    pow2 = (((bits >> 7) & 0xFF) > 1) & ((bits & 0x7F) == 0)
    below = exact & ~rule & toward_zero & pow2 & (a > u / 4) & (a < u / 2)
    kind = np.where(rule == exact, AGREE, np.where(tie, TIE_TO_EVEN, np.where(below, BELOW_POWER_OF_TWO, OTHER)))
    return kind.astype(np.int8)


# ----------------------------------------------------------------------------------------------
# Change probes and sparsity
# ----------------------------------------------------------------------------------------------


def _pair(w0, w1) -> tuple[np.ndarray, np.ndarray]:
    a = _stored("w0", w0)
    b = _stored("w1", w1)
    require_same_shape("w0", a, "w1", b)
    return a, b


def changed_mask_relative(w0, w1, eta: float = 1e-3) -> np.ndarray:
    """The paper's bf16-aware probe (docs/science.md section 4, claim C2): True where a weight changed.

    Unchanged iff |w1 - w0| <= eta * max(|w0|, |w1|) on bf16 values upcast to float64 (both zero:
    unchanged; +0 vs -0: unchanged). For bf16 values and any eta < 2^-8 this equals numeric
    inequality, i.e. bitwise inequality with signed zeros read as equal: two distinct bf16 values
    differ by at least 2^-8 max(|w0|, |w1|), met at w0 = 2^e (2 - 2^-7), w1 = 2^(e+1). The paper
    states eta < 2^-9, which is sufficient. Inputs that are not bf16 are rounded to bf16; NaN and inf refused.
    """
    require_open_unit("eta", eta)
    a, b = _pair(w0, w1)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return ~(np.abs(b - a) <= eta * np.maximum(np.abs(a), np.abs(b)))


def changed_mask_absolute(w0, w1, tol: float = 1e-5) -> np.ndarray:
    """The absolute probe of Mukherjee et al. 2025 (claim C2): changed iff |w1 - w0| > tol.

    Applied to the values as given (upcast to float64, no bf16 rounding): on bf16 checkpoints it
    misses changes of tiny weights (spacing 2^-27 near 1e-6); on float32 values it flags changes that
    a bf16 export would not show (large weights: spacing 8 in [1024, 2048)). NaN and inf refused.
    """
    require_positive("tol", tol)
    a = _delta("w0", w0)
    b = _delta("w1", w1)
    require_same_shape("w0", a, "w1", b)
    return np.abs(b - a) > tol


def changed_mask_bitwise(w0, w1, zero_sign_counts: bool = False) -> np.ndarray:
    """Bitwise truth: the uint16 views of bf16(w0) and bf16(w1) differ.

    With ``zero_sign_counts=False`` (default) a change between +0 and -0 is not a change, matching
    the paper's probe; with True it is the raw bit comparison. NaN and inf refused.
    """
    a, b = _pair(w0, w1)
    diff = a.view(np.uint16) != b.view(np.uint16)
    if not zero_sign_counts:
        diff &= ~((a.astype(np.float64) == 0) & (b.astype(np.float64) == 0))
    return diff


def sparsity(mask) -> float:
    """Update sparsity (docs/science.md section 4): 1 - #changed / #params of a boolean changed mask."""
    m = np.asarray(mask)
    require_nonempty("mask", m)
    return float(1.0 - np.count_nonzero(m) / m.size)


_PROBES: dict[str, Callable] = {
    "relative": lambda a, b, eta, tol: changed_mask_relative(a, b, eta=eta),
    "absolute": lambda a, b, eta, tol: changed_mask_absolute(a, b, tol=tol),
    "bitwise": lambda a, b, eta, tol: changed_mask_bitwise(a, b),
}


def checkpoint_sparsity(
    params0: Mapping[str, object],
    params1: Mapping[str, object],
    probe: str | Callable = "relative",
    eta: float = 1e-3,
    tol: float = 1e-5,
) -> dict:
    """Per-tensor and overall update sparsity between two checkpoints (dicts name -> array).

    ``probe``: "relative" (paper, eta), "absolute" (Mukherjee et al., tol), "bitwise", or a callable
    (w0, w1) -> changed mask. A tensor held as fp16 on either side (an fp16 export) is read with
    ``changed_mask_fp16`` (its stored values compared) under "relative" and "bitwise": the bf16 probes would
    round it to bf16, and eta = 1e-3 lies above the relative spacing of neighbouring fp16 values (2^-11 to
    2^-10), so the relative probe is not sound for fp16. Returns {"per_tensor": {name: sparsity},
    "changed": {name: int}, "size": {name: int}, "overall": float}; overall counts every parameter once
    (size-weighted).
    """
    if not params0:
        raise ValueError("Argument `params0` holds no tensors.")
    missing = sorted(set(params0) ^ set(params1))
    if missing:
        where = "params1" if missing[0] in params0 else "params0"
        raise ValueError(f"Tensor `{missing[0]}` is missing from `{where}`; both checkpoints need the same tensors.")
    if callable(probe):
        fn = lambda a, b: np.asarray(probe(a, b))  # noqa: E731
    elif probe in _PROBES:
        fn = lambda a, b: _PROBES[probe](a, b, eta, tol)  # noqa: E731
    else:
        raise ValueError(f"Argument `probe` must be one of {sorted(_PROBES)} or a callable, got {probe!r}.")
    per, changed, size = {}, {}, {}
    for name in sorted(params0):
        a, b = np.asarray(params0[name]), np.asarray(params1[name])
        require_same_shape(f"params0[{name!r}]", a, f"params1[{name!r}]", b)
        fp16 = np.float16 in (a.dtype, b.dtype) and probe in ("relative", "bitwise")
        try:
            m = changed_mask_fp16(a, b) if fp16 else fn(a, b)
        except ValueError as exc:
            raise ValueError(f"Tensor `{name}`: {exc}") from None
        changed[name] = int(np.count_nonzero(m))
        size[name] = int(m.size)
        per[name] = 1.0 - changed[name] / max(size[name], 1)
    total = sum(size.values())
    if total == 0:
        raise ValueError("Argument `params0` holds only empty tensors.")
    return {"per_tensor": per, "changed": changed, "size": size, "overall": 1.0 - sum(changed.values()) / total}


def probe_confusion(w0, w1, tol: float = 1e-5) -> dict:
    """Confusion counts of the absolute probe (claim C2) against bitwise truth after bf16 storage.

    Truth: ``changed_mask_bitwise(w0, w1)`` (bf16 export of both, signed zeros equal). Probe:
    ``changed_mask_absolute(w0, w1, tol)`` on the values as given. With bf16 inputs false positives
    are impossible (equal bits give |dw| = 0) and false negatives are tiny weights; with float32
    inputs false positives are sub-ULP changes above tol (large weights). Returns integer counts
    false_positive, false_negative, true_positive, true_negative and total.
    """
    truth = changed_mask_bitwise(w0, w1)
    probe = changed_mask_absolute(w0, w1, tol=tol)
    return {
        "false_positive": int(np.count_nonzero(probe & ~truth)),
        "false_negative": int(np.count_nonzero(~probe & truth)),
        "true_positive": int(np.count_nonzero(probe & truth)),
        "true_negative": int(np.count_nonzero(~probe & ~truth)),
        "total": int(truth.size),
    }


def predicted_visible_share(w_fp32, d_fp32, exact: bool = True) -> dict:
    """Predicted share of entries whose update is visible after bf16 storage (claims C6, C9).

    The weights are stored as bf16(w_fp32). "exact" uses ``is_visible`` (exact rounding, or float32
    arithmetic with ``exact=False``); "half_ulp" uses the paper's rule. Returns shares "exact" and
    "half_ulp", the number of entries where they "disagree", and "n".
    """
    wb = _stored("w_fp32", w_fp32)
    dd = _delta("d_fp32", d_fp32)
    require_same_shape("w_fp32", wb, "d_fp32", dd)
    ex = is_visible(wb, dd, exact=exact)
    rule = half_ulp_rule(wb, dd)
    return {
        "exact": float(np.mean(ex)),
        "half_ulp": float(np.mean(rule)),
        "disagree": int(np.count_nonzero(ex != rule)),
        "n": int(ex.size),
    }


# ----------------------------------------------------------------------------------------------
# Storage regimes
# ----------------------------------------------------------------------------------------------


def _deltas_for(w: np.ndarray, deltas_seq) -> np.ndarray:
    seq = np.asarray(deltas_seq)
    require_nonempty("deltas_seq", seq)
    if seq.shape[1:] != w.shape:
        raise ValueError(
            f"Argument `deltas_seq` must have shape (T, *{tuple(w.shape)}) to match the weights, got {tuple(seq.shape)}."
        )
    require_finite("deltas_seq", seq)
    return seq


def apply_bf16_every_step(w_bf16, deltas_seq, exact: bool = True) -> np.ndarray:
    """Storage regime "bf16 every step" (Gate III): w <- bf16(w + d_t) for t = 1..T; final stored bf16.

    Each step is rounded on its own, so a step below the visibility threshold is lost for good, however
    many such steps follow. ``deltas_seq`` has shape (T, *w.shape). ``exact`` as in ``bf16_add``.
    """
    w = _stored("w_bf16", w_bf16)
    seq = _deltas_for(w, deltas_seq)
    for d in seq:
        w = bf16_add(w, d, exact=exact)
    return w


def apply_fp32_master(w_fp32, deltas_seq) -> np.ndarray:
    """Storage regime "fp32 master + bf16 export" (Gate III): w <- fp32(w + d_t), export bf16(w_T).

    Only the accumulated change has to cross the visibility threshold. ``deltas_seq`` has shape
    (T, *w.shape); arithmetic in float32 (numpy, subnormals kept). Returns the exported bf16 values.
    """
    a = np.asarray(w_fp32)
    require_nonempty("w_fp32", a)
    require_finite("w_fp32", a)
    w = a.astype(np.float32)
    seq = _deltas_for(w, deltas_seq).astype(np.float32)
    for d in seq:
        w = (w + d).astype(np.float32)
    return to_bf16(w)


@jax.jit
def _bf16_every_step_scan(w, seq):
    def step(carry, d):
        return (carry.astype(jnp.float32) + d).astype(jnp.bfloat16), None

    out, _ = jax.lax.scan(step, w, seq)
    return out


@jax.jit
def _fp32_master_scan(w, seq):
    def step(carry, d):
        return carry + d, None

    out, _ = jax.lax.scan(step, w, seq)
    return out.astype(jnp.bfloat16)


def apply_bf16_every_step_jax(w_bf16, deltas_seq) -> jax.Array:
    """``apply_bf16_every_step`` as a jitted ``lax.scan`` in float32 arithmetic (what a JAX trainer does).

    Equals ``apply_bf16_every_step(..., exact=False)`` bit for bit, except that XLA on CPU flushes
    subnormal float32 sums to zero.
    """
    w = _stored("w_bf16", w_bf16)
    seq = _deltas_for(w, deltas_seq)
    return _bf16_every_step_scan(jnp.asarray(w, jnp.bfloat16), jnp.asarray(seq, jnp.float32))


def apply_fp32_master_jax(w_fp32, deltas_seq) -> jax.Array:
    """``apply_fp32_master`` as a jitted ``lax.scan`` (float32 accumulation, bf16 export at the end).

    Same caveat as ``apply_bf16_every_step_jax`` for subnormal sums on CPU.
    """
    a = np.asarray(w_fp32)
    require_nonempty("w_fp32", a)
    require_finite("w_fp32", a)
    seq = _deltas_for(a, deltas_seq)
    return _fp32_master_scan(jnp.asarray(a, jnp.float32), jnp.asarray(seq, jnp.float32))


# ----------------------------------------------------------------------------------------------
# Regime numbers (docs/science.md section 7): dimensionless ratios to half a ULP, measured per run
# ----------------------------------------------------------------------------------------------

Z_QUARTILE = 0.6744897501960817
"""Phi^-1(3/4): the median of |Z| for a standard normal Z (so a N(0, s^2) variable has median |x| = Z_QUARTILE s)."""

SIGN_CONSISTENCY_SLACK = 1e-3
"""Relative excess of |change_sum| over abs_change_sum accepted as float32 accumulation error (then clipped to 1)."""


def _positive_int(name: str, value) -> int:
    """A positive integer (Python or numpy int, or an integral float); booleans refused."""
    ok = isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not np.isfinite(value) or int(value) != value or int(value) < 1:
        raise ValueError(f"Argument `{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _positive_finite(name: str, value) -> float:
    """A finite, strictly positive real scalar."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Argument `{name}` must be a positive finite number, got {value!r}.") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"Argument `{name}` must be a positive finite number, got {value!r}.")
    return v


def _values(name: str, x, shape: tuple | None = None) -> np.ndarray:
    """A non-empty, finite float64 array (of ``shape`` when given)."""
    a = np.asarray(x)
    require_nonempty(name, a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == BF16):
        raise ValueError(f"Argument `{name}` must hold real numbers, got dtype {a.dtype}.")
    require_finite(name, a)
    if shape is not None and a.shape != shape:
        raise ValueError(f"Argument `{name}` must have shape {shape} like the weights, got {a.shape}.")
    return a.astype(np.float64)


def _nonnegative(name: str, x, shape: tuple | None = None) -> np.ndarray:
    a = _values(name, x, shape)
    if np.any(a < 0):
        raise ValueError(f"Argument `{name}` must be non-negative (a sum of absolute changes), got a minimum of {a.min()}.")
    return a


def _bool_mask(name: str, m, shape: tuple | None = None) -> np.ndarray:
    """A non-empty boolean array (of ``shape`` when given); integer 0/1 masks are refused on purpose."""
    a = np.asarray(m)
    if a.dtype != np.bool_:
        raise ValueError(f"Argument `{name}` must be a boolean mask, got dtype {a.dtype}.")
    require_nonempty(name, a)
    if shape is not None and a.shape != shape:
        raise ValueError(f"Argument `{name}` must have shape {shape} like the weights, got {a.shape}.")
    return a


def _median_or_nan(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def _half_ulp_of_bf16(wb: np.ndarray) -> np.ndarray:
    """Half the bf16 ULP of already-rounded bf16 values, float64 (no argument checks)."""
    return ulp_bf16(wb.astype(np.float64)) / 2


def half_ulp_bf16(w) -> np.ndarray:
    """Half the bf16 ULP of the stored value bf16(w) (docs/science.md section 7; Gate III, claim C9), float64.

    ``w`` is rounded to bf16 first (so 1.999 stores as 2.0 and gets 2^-7, not 2^-8), then
    ULP / 2 = 2^(e-8) for |bf16(w)| in [2^e, 2^(e+1)): half-ULP / |w| lies in (2^-9, 2^-8], and it doubles
    at each power of two. Zero and subnormals take ``ulp_bf16``'s fixed spacing: 2^-134. This is the
    paper's visibility threshold; the exact one differs only toward zero from a power of two and at
    exact ties (``visibility_threshold``). NaN and inf refused.
    """
    return _half_ulp_of_bf16(_stored("w", w))


def _moved_or_default(moved, shape: tuple, default: np.ndarray) -> np.ndarray:
    return default if moved is None else _bool_mask("moved", moved, shape)


def step_ratio(w0, abs_change_sum, steps, moved=None) -> float:
    """Step ratio (docs/science.md section 7): median over weights of (abs_change_sum / steps) / half_ulp_bf16(w0).

    The mean per-step change of each weight in units of half its bf16 ULP, measured from the updates
    (``abs_change_sum`` = sum over steps of |per-step fp32 change|), not from the learning rate. The
    median is over the weights that moved (abs_change_sum > 0) unless a boolean ``moved`` mask is
    given; NaN if no weight is selected. Zero weights have half-ULP 2^-134, so their ratio is huge
    (any change of a zero shows): prefer the median, as here, to a mean.
    """
    wb = _stored("w0", w0)
    a = _nonnegative("abs_change_sum", abs_change_sum, wb.shape)
    t = _positive_int("steps", steps)
    sel = _moved_or_default(moved, wb.shape, a > 0)
    return _median_or_nan((a / t / _half_ulp_of_bf16(wb))[sel])


def drift_ratio(w0, w1, moved=None) -> float:
    """Drift ratio (docs/science.md section 7): median over weights of |w1 - w0| / half_ulp_bf16(w0), fp32 master.

    ``w1`` is the final fp32 master weight, ``w0`` the (bf16) base; the difference is taken in float64 on
    the values as given. A weight shows in the bf16 export roughly when its ratio reaches 1 (exactly:
    ``predict_changed_from_drift``). Default selection: the weights whose master value changed
    (w1 != w0); this drops weights that moved and came back exactly, so pass ``moved`` (for example the
    weights that received a gradient, or abs_change_sum > 0) when that is known. NaN if none selected.
    """
    wb = _stored("w0", w0)
    a0 = _values("w0", w0)
    a1 = _values("w1", w1, wb.shape)
    drift = np.abs(a1 - a0)
    sel = _moved_or_default(moved, wb.shape, drift > 0)
    return _median_or_nan((drift / _half_ulp_of_bf16(wb))[sel])


def walk_ratio(lr, steps, w0, moved=None) -> float:
    """Random-walk drift ratio (docs/science.md section 7): median over weights of lr * sqrt(T) / half_ulp_bf16(w0).

    The drift ratio predicted if each weight takes T steps of size lr in independent random
    directions (the RMS of such a walk is lr sqrt(T)). Reported as the median over weights of the
    per-weight ratio, i.e. lr sqrt(T) times the median of 1 / half-ULP, which depends on the base only
    through its magnitudes. No change data is passed, so the default selection is every weight; pass
    ``moved`` to restrict it (the same weights as ``step_ratio`` / ``drift_ratio`` for a like-for-like row).
    The consistent-sign estimate lr T / half-ULP is this times sqrt(T).
    """
    rate = _positive_finite("lr", lr)
    t = _positive_int("steps", steps)
    wb = _stored("w0", w0)
    sel = _moved_or_default(moved, wb.shape, np.ones(wb.shape, dtype=bool))
    return _median_or_nan((rate * np.sqrt(t) / _half_ulp_of_bf16(wb))[sel])


def _sign_consistency_values(cs: np.ndarray, acs: np.ndarray, name_cs: str = "change_sum") -> np.ndarray:
    """|cs| / acs per weight (0 where acs = 0), clipped to [0, 1] after a consistency check."""
    excess = np.abs(cs) > acs * (1 + SIGN_CONSISTENCY_SLACK)
    if np.any(excess):
        raise ValueError(
            f"Argument `{name_cs}` exceeds the matching abs_change_sum in magnitude at {int(np.count_nonzero(excess))} "
            "entries; |sum of changes| cannot exceed the sum of |changes|."
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(acs > 0, np.abs(cs) / np.where(acs > 0, acs, 1.0), 0.0)
    return np.minimum(ratio, 1.0)


def sign_consistency(change_sum, abs_change_sum, moved=None) -> float:
    """Sign consistency (docs/science.md section 7): median over moved weights of |change_sum| / abs_change_sum.

    1 = every step of the weight went the same way; a random walk of T equal steps gives |S_T| / T, whose
    mean is about sqrt(2 / (pi T)) and whose median is about Z_QUARTILE / sqrt(T) = 0.674 / sqrt(T) (the
    median of |N(0, T)| / T); this function returns the median. Per weight, by definition,
    |change_sum| = consistency x abs_change_sum. Weights with abs_change_sum = 0 have no direction
    and are always left out (also from a given ``moved`` mask). float32 accumulation can put |change_sum|
    a hair above abs_change_sum: up to a relative SIGN_CONSISTENCY_SLACK it is clipped to 1, beyond it
    refused. NaN if no weight is selected.
    """
    acs = _nonnegative("abs_change_sum", abs_change_sum)
    cs = _values("change_sum", change_sum, acs.shape)
    ratio = _sign_consistency_values(cs, acs)
    sel = acs > 0
    if moved is not None:
        sel = sel & _bool_mask("moved", moved, acs.shape)
    return _median_or_nan(ratio[sel])


def relative_update_norm(W0, W1) -> float:
    """Relative update norm (docs/science.md section 7 target, about 1e-3 per matrix for published RLVR):
    ||W1 - W0||_F / ||W0||_F in float64 (the 2-norm of the flattened arrays for other shapes); NaN if W0 = 0."""
    a = _values("W0", W0)
    b = _values("W1", W1, a.shape)
    den = float(np.linalg.norm(a.ravel()))
    return float(np.linalg.norm((b - a).ravel()) / den) if den > 0 else float("nan")


def _as_float32(name: str, x) -> np.ndarray:
    """Float32 values: float32 as is, narrower floats (bf16, float16) upcast exactly, float64 only if exact."""
    a = np.asarray(x)
    require_nonempty(name, a)
    if not np.issubdtype(a.dtype, np.floating) and a.dtype != BF16:
        raise ValueError(f"Argument `{name}` must hold floating-point values, got dtype {a.dtype}.")
    require_finite(name, a)
    b = a.astype(np.float32)
    if a.dtype == np.float64 and not np.array_equal(b.astype(np.float64), a):
        raise ValueError(f"Argument `{name}` holds float64 values that float32 cannot represent; pass the float32 weights.")
    return b


def changed_mask_fp32(w0, w1) -> np.ndarray:
    """Bitwise change of fp32 master weights (docs/science.md claim C6, the "fp32 storage" negative control).

    True where the float32 bit patterns of ``w0`` and ``w1`` differ (``.view(np.uint32)``), with +0 and
    -0 read as equal like the other probes. Unlike ``changed_mask_bitwise``, nothing is rounded to bf16:
    a change below bf16 resolution (1 -> 1 + 2^-20) counts as changed here and as unchanged there.
    float32 inputs are used as given, bf16/float16 ones upcast exactly; float64 inputs must be exactly
    float32-representable (a bit comparison of other values is undefined). NaN and inf refused.
    For a checkpoint: ``checkpoint_sparsity(p0, p1, probe=changed_mask_fp32)``.
    """
    a = _as_float32("w0", w0)
    b = _as_float32("w1", w1)
    require_same_shape("w0", a, "w1", b)
    diff = a.view(np.uint32) != b.view(np.uint32)
    return diff & ~((a == 0) & (b == 0))


def _split_counts(changed: np.ndarray, eligible: np.ndarray) -> dict:
    n = int(changed.size)
    n_eligible = int(np.count_nonzero(eligible))
    n_changed = int(np.count_nonzero(changed))
    n_changed_eligible = int(np.count_nonzero(changed & eligible))
    return {
        "n": n,
        "n_eligible": n_eligible,
        "n_untouched": n - n_eligible,
        "untouched_share": (n - n_eligible) / n,
        "n_changed": n_changed,
        "n_changed_eligible": n_changed_eligible,
        "n_changed_untouched": n_changed - n_changed_eligible,
        "sparsity_all": 1.0 - n_changed / n,
        "sparsity_eligible": 1.0 - n_changed_eligible / n_eligible if n_eligible else float("nan"),
    }


def _same_keys(name_ref: str, ref: Mapping, others: dict[str, object]) -> None:
    if not isinstance(ref, Mapping) or not ref:
        raise ValueError(f"Argument `{name_ref}` must be a non-empty dict of tensors.")
    for name, d in others.items():
        if not isinstance(d, Mapping):
            raise ValueError(f"Argument `{name}` must be a dict with the same tensors as `{name_ref}`.")
        extra = sorted(set(ref) ^ set(d))
        if extra:
            where = name if extra[0] in ref else name_ref
            raise ValueError(f"Tensor `{extra[0]}` is missing from `{where}`; `{name_ref}` and `{name}` need the same tensors.")


def sparsity_split(changed, eligible) -> dict:
    """Update sparsity over all parameters and over the eligible ones only (docs/science.md section 7, last paragraph).

    ``eligible``: parameters that received a gradient at some step; the others are structurally
    untouched (about 9 % of the tiny model: unused embedding and position rows) and look unchanged
    under every method. Both masks boolean, same shape. Returns a flat dict: n, n_eligible, n_untouched,
    untouched_share, n_changed, n_changed_eligible, n_changed_untouched (changes without a gradient:
    weight decay, for example), sparsity_all = 1 - n_changed / n, sparsity_eligible =
    1 - n_changed_eligible / n_eligible (NaN if none eligible). For dicts name -> mask (same keys) the
    counts are pooled over tensors and the dict also holds "per_tensor": {name: flat dict}.
    """
    if isinstance(changed, Mapping) or isinstance(eligible, Mapping):
        _same_keys("changed", changed, {"eligible": eligible})
        per, cs, es = {}, [], []
        for name in sorted(changed):
            c = _bool_mask(f"changed[{name!r}]", changed[name])
            e = _bool_mask(f"eligible[{name!r}]", eligible[name], c.shape)
            per[name] = _split_counts(c, e)
            cs.append(c.ravel())
            es.append(e.ravel())
        out = _split_counts(np.concatenate(cs), np.concatenate(es))
        out["per_tensor"] = per
        return out
    c = _bool_mask("changed", changed)
    e = _bool_mask("eligible", eligible, c.shape)
    return _split_counts(c, e)


# ----------------------------------------------------------------------------------------------
# Sparsity predictors (docs/science.md section 7): per-weight drift, and lr / steps / sign consistency only
# ----------------------------------------------------------------------------------------------


def predict_changed_from_drift(w0, drift) -> np.ndarray:
    """Half-ULP prediction of the bf16-export changed mask (Gate III, claim C9; docs/science.md section 7).

    Changed iff |drift| >= half_ulp_bf16(w0), with ``drift`` the accumulated fp32 change of the
    master weight (w_T - w_0, or the sum of per-step changes). The boundary counts as changed (the
    paper's ">=", as in ``half_ulp_rule``). Exact rounding, ``bf16(w0 + drift) != w0`` (``is_visible``,
    or ``changed_mask_bitwise(w0, to_bf16(w0 + drift))``), disagrees exactly on the known half-ULP-rule
    set (``disagreement_kind`` != AGREE):
    - ties: |drift| == half-ULP exactly and w0's last mantissa bit even (zero included): round half to
      even keeps w0, predicted changed;
    - below a power of two: |w0| = 2^e normal, drift toward zero with half-ULP/2 < |drift| < half-ULP:
      the spacing below 2^e is half the ULP, so the export changes, predicted unchanged.
    Everywhere else (in particular for every drift away from these two boundaries) it is exact.
    """
    wb = _stored("w0", w0)
    d = _delta("drift", drift)
    require_same_shape("w0", wb, "drift", d)
    return np.abs(d) >= _half_ulp_of_bf16(wb)


def predict_sparsity_from_drift(w0, drift) -> float:
    """Predicted bf16-export sparsity 1 - mean(predict_changed_from_drift(w0, drift)) (docs/science.md section 7)."""
    return sparsity(predict_changed_from_drift(w0, drift))


def _sign_consistency_arg(value) -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Argument `sign_consistency` must be a number in [0, 1], got {value!r}.") from None
    if not (0.0 <= c <= 1.0):
        raise ValueError(f"Argument `sign_consistency` must be a number in [0, 1], got {value!r}.")
    return c


def _half_ulp_levels(half_ulp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct half-ULPs (powers of two, at most a few dozen), their counts, and each entry's level index."""
    k = np.frexp(half_ulp.ravel())[1] - 1  # half-ULP = 2^k exactly
    k_lo = int(k.min())
    counts = np.bincount(k - k_lo)
    keep = np.flatnonzero(counts)
    level_of = np.full(counts.size, -1, dtype=np.int64)
    level_of[keep] = np.arange(keep.size)
    return np.ldexp(1.0, keep + k_lo), counts[keep], level_of[k - k_lo]


def _gaussian_change_probability(levels: np.ndarray, typical_drift: float) -> np.ndarray:
    """P(|X| >= h) for X ~ N(0, sigma^2) with median |X| = typical_drift: erfc(Z_QUARTILE h / (sqrt 2 D)).

    Called on the few distinct half-ULP levels (``_half_ulp_levels``), so a scalar erfc suffices."""
    if typical_drift == 0:
        return np.zeros_like(levels)
    scale = Z_QUARTILE / (math.sqrt(2.0) * typical_drift)
    return np.array([math.erfc(h * scale) for h in levels.ravel()], dtype=np.float64).reshape(levels.shape)


def _gaussian_sparsity(levels: np.ndarray, counts: np.ndarray, typical_drift: float) -> float:
    """1 - mean P over weights given as a half-ULP histogram (levels, counts)."""
    return 1.0 - float(np.dot(counts, _gaussian_change_probability(levels, typical_drift))) / float(counts.sum())


def _drift_distribution_probability(levels: np.ndarray, drift_magnitudes: np.ndarray) -> np.ndarray:
    """Share of the drift magnitudes >= each level (the half-ULP rule on the pooled drift distribution)."""
    mags = np.sort(drift_magnitudes.ravel())
    return (mags.size - np.searchsorted(mags, levels, side="left")) / mags.size


def change_probability_from_regime(w0, lr, steps, sign_consistency, step_fraction: float = 1.0) -> np.ndarray:
    """Per-weight probability that the bf16 export shows a change, from lr, steps and sign consistency only.

    docs/science.md section 7 as a model with no per-weight change data (only |w0|, which sets each
    weight's half-ULP h):
        D   = step_fraction * lr * T * c                     (typical |drift| of a weight)
        P_i = P(|X| >= h_i),  X ~ N(0, sigma^2),  sigma = D / Z_QUARTILE   (so median |X| = D)
            = erfc(Z_QUARTILE * h_i / (sqrt(2) * D))          (0 where D = 0)
    Assumptions. (1) Adam moves every coordinate by about step_fraction * lr per step (1 by default:
    m / sqrt(v) near 1 for a consistent gradient; the measured value is median(abs_change_sum) / (lr T),
    reported as "step_fraction" by ``regime_numbers``). (2) |drift| = c * sum |step| by definition of
    sign consistency, with one c for all weights (pass the median). (3) Drift is independent of |w0|
    (Adam's step does not scale with the weight). (4) Across weights the drift is zero-mean Gaussian.
    (5) fp32 master accumulation with a bf16 export and the half-ULP rule (its tie and power-of-two
    exceptions have probability zero or about 1/128 of weights); with bf16 storage every step sub-ULP
    steps are lost and the model overpredicts changes.
    Why Gaussian with the median matched: for a random walk of T steps of size lr the median sign
    consistency is Z_QUARTILE / sqrt(T), so D = Z_QUARTILE lr sqrt(T) and the model is the exact
    central-limit law N(0, lr^2 T): it is right in the random-walk limit. When c is near 1 the drifts
    concentrate near lr T (a point mass fits better) and the Gaussian spreads them too much; where the
    measured drifts are available, ``predict_changed_from_drift`` needs no model.
    Returns float64 probabilities, shape of ``w0``.
    """
    wb = _stored("w0", w0)
    rate = _positive_finite("lr", lr)
    t = _positive_int("steps", steps)
    c = _sign_consistency_arg(sign_consistency)
    s = _positive_finite("step_fraction", step_fraction)
    levels, _, level_index = _half_ulp_levels(_half_ulp_of_bf16(wb))
    return _gaussian_change_probability(levels, s * rate * t * c)[level_index].reshape(wb.shape)


def predict_sparsity_from_regime(w0, lr, steps, sign_consistency, step_fraction: float = 1.0) -> float:
    """Predicted bf16-export sparsity 1 - mean_i P_i of the Gaussian regime model (``change_probability_from_regime``;
    docs/science.md section 7). Pass the weights the sparsity is about (for example only those that receive a gradient)."""
    wb = _stored("w0", w0)
    rate = _positive_finite("lr", lr)
    t = _positive_int("steps", steps)
    c = _sign_consistency_arg(sign_consistency)
    s = _positive_finite("step_fraction", step_fraction)
    levels, counts, _ = _half_ulp_levels(_half_ulp_of_bf16(wb))
    return _gaussian_sparsity(levels, counts, s * rate * t * c)


def drift_for_sparsity(w0, target_sparsity) -> float:
    """Inverse of the Gaussian regime model: the typical drift D at which 1 - mean_i P_i = target_sparsity.

    P_i = erfc(Z_QUARTILE h_i / (sqrt(2) D)) as in ``change_probability_from_regime`` (docs/science.md
    section 7); the predicted sparsity falls strictly as D grows, so D is found by bisection on log2 D
    (to about 1e-12 relative). To reach it, choose lr * T * c * step_fraction = D, e.g.
    lr = D / (T c) for Adam steps of about lr. ``target_sparsity`` in (0, 1).
    """
    require_open_unit("target_sparsity", target_sparsity)
    wb = _stored("w0", w0)
    levels, counts, _ = _half_ulp_levels(_half_ulp_of_bf16(wb))
    lo, hi = np.log2(levels.min()) - 60.0, np.log2(levels.max()) + 60.0  # sparsity ~1 at lo, ~0 at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _gaussian_sparsity(levels, counts, 2.0**mid) > target_sparsity:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return float(2.0 ** (0.5 * (lo + hi)))


def change_probability_from_drift_distribution(w0, drift) -> np.ndarray:
    """Per-weight change probability if the measured drift magnitudes were dealt to weights at random.

    P_i = share of all |drift| values >= half_ulp_bf16(w0_i) (the half-ULP rule applied to the pooled,
    empirical drift distribution, independent of which weight drifted). Between the Gaussian regime
    model and the per-weight ``predict_changed_from_drift`` (docs/science.md section 7): its sparsity
    differs from the Gaussian model's by the shape of the drift distribution only, and from the
    per-weight prediction by the correlation between drift and |w0| only. P depends on |w0| alone, so it
    is a magnitude-only baseline for ``predicted_overlap``.
    """
    wb = _stored("w0", w0)
    d = _delta("drift", drift)
    require_same_shape("w0", wb, "drift", d)
    levels, _, level_index = _half_ulp_levels(_half_ulp_of_bf16(wb))
    return _drift_distribution_probability(levels, np.abs(d))[level_index].reshape(wb.shape)


def fit_quality(predicted, measured) -> dict:
    """How well predictions match measurements (docs/science.md section 7, predictor checks).

    ``predicted`` and ``measured``: arrays of the same shape, or dicts name -> number with the same keys.
    Returns {"n", "r2": 1 - SS_res / SS_tot with SS_tot about the mean of measured (NaN if measured is
    constant), "slope_through_origin": least squares of measured = b * predicted (1 = calibrated; NaN if
    predicted is all 0), "ols_slope", "ols_intercept" (measured = a + b * predicted; NaN for n < 2 or
    constant predicted), "mean_abs_miss", "max_abs_miss", "max_miss_index": flat index (arrays) or key
    (dicts) of the largest |measured - predicted|}.
    """
    if isinstance(predicted, Mapping) or isinstance(measured, Mapping):
        _same_keys("predicted", predicted, {"measured": measured})
        keys = sorted(predicted)
        p = _values("predicted", [predicted[k] for k in keys])
        m = _values("measured", [measured[k] for k in keys])
    else:
        p = _values("predicted", predicted).ravel()
        m = _values("measured", measured, np.shape(predicted)).ravel()
        keys = None
    resid = m - p
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((m - m.mean()) ** 2))
    pp = float(np.dot(p, p))
    var_p = float(np.sum((p - p.mean()) ** 2))
    if p.size >= 2 and var_p > 0:
        ols_slope = float(np.sum((p - p.mean()) * (m - m.mean())) / var_p)
        ols_intercept = float(m.mean() - ols_slope * p.mean())
    else:
        ols_slope = ols_intercept = float("nan")
    i = int(np.argmax(np.abs(resid)))
    return {
        "n": int(p.size),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "slope_through_origin": float(np.dot(p, m) / pp) if pp > 0 else float("nan"),
        "ols_slope": ols_slope,
        "ols_intercept": ols_intercept,
        "mean_abs_miss": float(np.mean(np.abs(resid))),
        "max_abs_miss": float(np.abs(resid[i])),
        "max_miss_index": keys[i] if keys is not None else i,
    }


# ----------------------------------------------------------------------------------------------
# Magnitude-stratified overlap (claim C11 against a rounding-only explanation)
# ----------------------------------------------------------------------------------------------


def _pooled_masks(changed, region, w0):
    """Flatten (and pool over tensors) changed / region / half-ULP exponent; tensor index per entry."""
    if isinstance(changed, Mapping) or isinstance(region, Mapping) or isinstance(w0, Mapping):
        _same_keys("changed", changed, {"region": region, "w0": w0})
        names = sorted(changed)
        cs, rs, ks, ts = [], [], [], []
        for i, name in enumerate(names):
            c = _bool_mask(f"changed[{name!r}]", changed[name])
            r = _bool_mask(f"region[{name!r}]", region[name], c.shape)
            wb = _stored(f"w0[{name!r}]", w0[name])
            require_same_shape(f"changed[{name!r}]", c, f"w0[{name!r}]", wb)
            cs.append(c.ravel())
            rs.append(r.ravel())
            ks.append(np.frexp(_half_ulp_of_bf16(wb).ravel())[1] - 1)
            ts.append(np.full(c.size, i, dtype=np.int64))
        return np.concatenate(cs), np.concatenate(rs), np.concatenate(ks), np.concatenate(ts), names
    c = _bool_mask("changed", changed)
    r = _bool_mask("region", region, c.shape)
    wb = _stored("w0", w0)
    require_same_shape("changed", c, "w0", wb)
    k = np.frexp(_half_ulp_of_bf16(wb).ravel())[1] - 1
    return c.ravel(), r.ravel(), k, np.zeros(c.size, dtype=np.int64), None


def _stratum_counts(stratum: np.ndarray, c: np.ndarray, r: np.ndarray):
    n_s = np.bincount(stratum)
    r_s = np.bincount(stratum, weights=r).round().astype(np.int64)
    c_s = np.bincount(stratum, weights=c).round().astype(np.int64)
    o_s = np.bincount(stratum, weights=c & r).round().astype(np.int64)
    return n_s, r_s, c_s, o_s


def _aggregate_excess(n_s, r_s, c_s, o_s) -> tuple[float, float, float]:
    """(excess, null standard error, expected overlap) of sum_s c_s (o_s / c_s - alpha_s) / C.

    The standard error is that of the overlap under the null "within each stratum the changed entries
    are a random subset" (hypergeometric: Var o_s = c_s alpha_s (1 - alpha_s) (n_s - c_s) / (n_s - 1)).
    """
    total = int(c_s.sum())
    if total == 0:
        return float("nan"), float("nan"), float("nan")
    ok = n_s > 0
    alpha = np.where(ok, r_s / np.where(ok, n_s, 1), 0.0)
    fpc = np.where(n_s > 1, (n_s - c_s) / np.where(n_s > 1, n_s - 1, 1), 0.0)
    expected = float(np.dot(c_s, alpha)) / total
    var = float(np.sum(c_s * alpha * (1 - alpha) * fpc)) / total**2
    return float(o_s.sum()) / total - expected, float(np.sqrt(var)), expected


def _z(x: float, se: float) -> float:
    return x / se if se > 0 else float("nan")


def overlap_within_strata(changed, region, w0) -> dict:
    """Overlap excess of a changed mask with a region, within strata of equal bf16 ULP (claim C11 control).

    Overlap excess = |changed & region| / |changed| - alpha (docs/science.md section 4, overlap against its
    random level). Principal-mask entries are large, with larger half-ULPs, so rounding alone lowers
    their change rate; this removes that path: within each stratum s of equal bf16 binade of |w0|
    (equal ULP; zero and subnormals form one stratum) excess_s = o_s / c_s - alpha_s with alpha_s the
    stratum's own region share, aggregated with weights c_s / C (C = all changed entries):
        excess = sum_s c_s (o_s / c_s - alpha_s) / C = overlap - sum_s c_s alpha_s / C.
    It is zero in expectation when the change probability depends on the stratum only (as the
    half-ULP mechanism does); a within-binade effect of |w0| is not removed. Masks and ``w0`` share a
    shape; dicts name -> array (same keys) are pooled and stratified by (tensor, binade).
    Returns {"excess", "standard_error", "z" (excess / standard_error), "overlap", "expected_overlap",
    "unstratified_excess" (overlap - |region| / n), "unstratified_standard_error", "unstratified_z",
    "excess_by_tensor" (strata = tensors only; equals the unstratified excess for one array), "alpha",
    "n", "n_changed", "n_region", "strata": [{"tensor" (None for an array), "log2_half_ulp",
    "half_ulp", "n", "region", "alpha", "changed", "overlap", "excess", "weight"}, ...]}. Standard errors
    are under the null of a random changed subset within each stratum (hypergeometric). NaN where no
    entry changed.
    """
    c, r, k, t, names = _pooled_masks(changed, region, w0)
    k_lo = int(k.min())
    width = int(k.max()) - k_lo + 1
    stratum = t * width + (k - k_lo)
    n_s, r_s, c_s, o_s = _stratum_counts(stratum, c, r)
    excess, se, expected = _aggregate_excess(n_s, r_s, c_s, o_s)
    n_u, r_u, c_u, o_u = _stratum_counts(np.zeros(c.size, dtype=np.int64), c, r)
    un_excess, un_se, _ = _aggregate_excess(n_u, r_u, c_u, o_u)
    by_tensor, _, _ = _aggregate_excess(*_stratum_counts(t, c, r))
    total = int(c_s.sum())
    strata = []
    for s in np.flatnonzero(n_s):
        ti, kk = divmod(int(s), width)
        cc = int(c_s[s])
        alpha = float(r_s[s]) / float(n_s[s])
        ov = float(o_s[s]) / cc if cc else float("nan")
        strata.append({
            "tensor": names[ti] if names is not None else None,
            "log2_half_ulp": kk + k_lo,
            "half_ulp": float(np.ldexp(1.0, kk + k_lo)),
            "n": int(n_s[s]),
            "region": int(r_s[s]),
            "alpha": alpha,
            "changed": cc,
            "overlap": ov,
            "excess": ov - alpha,
            "weight": cc / total if total else float("nan"),
        })
    return {
        "excess": excess,
        "standard_error": se,
        "z": _z(excess, se),
        "overlap": float(o_s.sum()) / total if total else float("nan"),
        "expected_overlap": expected,
        "unstratified_excess": un_excess,
        "unstratified_standard_error": un_se,
        "unstratified_z": _z(un_excess, un_se),
        "excess_by_tensor": by_tensor,
        "alpha": float(r.mean()),
        "n": int(c.size),
        "n_changed": total,
        "n_region": int(np.count_nonzero(r)),
        "strata": strata,
    }


def predicted_overlap(p_change, region) -> float:
    """Overlap excess expected if each weight changes independently with probability p (claim C11 baseline).

    sum_{region} p / sum p - |region| / n: the expected overlap (to first order in 1 / sum p) minus
    the random level alpha. With p from ``change_probability_from_regime`` or
    ``change_probability_from_drift_distribution`` (functions of |w0| only) it is the excess rounding
    alone produces. Arrays of the same shape, or dicts name -> array (pooled). NaN if sum p = 0.
    """
    if isinstance(p_change, Mapping) or isinstance(region, Mapping):
        _same_keys("p_change", p_change, {"region": region})
        ps, rs = [], []
        for name in sorted(p_change):
            p = _values(f"p_change[{name!r}]", p_change[name])
            ps.append(p.ravel())
            rs.append(_bool_mask(f"region[{name!r}]", region[name], p.shape).ravel())
        p, r = np.concatenate(ps), np.concatenate(rs)
    else:
        p = _values("p_change", p_change).ravel()
        r = _bool_mask("region", region, np.shape(p_change)).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError("Argument `p_change` must hold probabilities in [0, 1].")
    total = float(p.sum())
    if total == 0:
        return float("nan")
    return float(p[r].sum()) / total - float(np.count_nonzero(r)) / r.size


# ----------------------------------------------------------------------------------------------
# One call per run
# ----------------------------------------------------------------------------------------------


def _json_float(x: float):
    x = float(x)
    return x if np.isfinite(x) else None


def regime_numbers(w0, w1, change_sum, abs_change_sum, grad_seen, lr, steps) -> dict:
    """Regime numbers of one fine-tuning run (docs/science.md section 7), JSON-ready (undefined values are None).

    Arguments other than ``lr`` and ``steps`` are dicts name -> array with the same keys and shapes:
    ``w0`` the bf16-rounded base (values must be bf16-representable), ``w1`` the final fp32 master,
    ``change_sum`` / ``abs_change_sum`` the sums over steps of the per-step fp32 change and of its
    absolute value, ``grad_seen`` (bool) the weights whose gradient was non-zero at some step
    ("eligible"; the rest are structurally untouched). Pooled over tensors:
    - step_ratio, drift_ratio, walk_ratio: medians over eligible weights (``step_ratio``,
      ``drift_ratio``, ``walk_ratio``); sign_consistency: median over eligible weights with
      abs_change_sum > 0; lr_ratio: median lr / half-ULP (the section 7 table row); step_fraction:
      median abs_change_sum / (lr T) (Adam's mean step in units of lr); median_abs_w0 (eligible);
      relative_update_norm: median over the 2-D tensors of ||w1 - w0||_F / ||w0||_F (published RLVR: about 1e-3);
    - steps, lr, n, untouched_share;
    - sparsity_bf16_all / _eligible: bf16 export, ``changed_mask_bitwise(w0, to_bf16(w1))``;
      sparsity_fp32_all / _eligible: fp32 bits, ``changed_mask_fp32(w0, w1)``;
    - predicted_sparsity_from_drift (eligible; the half-ULP rule on drift = change_sum, which in
      fp32-master runs equals w1 - w0 up to float32 accumulation rounding and in bf16-every-step runs is
      the drift an fp32 master would have had), predicted_sparsity_from_drift_all, and
      drift_prediction_misses (eligible weights where that prediction and the bf16 export disagree);
    - predicted_sparsity_from_drift_distribution (eligible; ``change_probability_from_drift_distribution``);
    - predicted_sparsity_from_regime (eligible; Gaussian model with lr, steps, the pooled median sign
      consistency and step_fraction 1), predicted_sparsity_from_regime_measured_step (same with the
      measured step_fraction);
    - per_tensor: {name: {n, relative_update_norm (2-D tensors, else None), sparsity_bf16,
      sparsity_bf16_eligible, untouched_share, drift_ratio (median over the tensor's eligible weights)}}.
    """
    _same_keys("w0", w0, {"w1": w1, "change_sum": change_sum, "abs_change_sum": abs_change_sum, "grad_seen": grad_seen})
    rate = _positive_finite("lr", lr)
    t = _positive_int("steps", steps)
    # Per-weight quantities of the eligible weights, pooled over tensors; masks over all weights.
    pooled = {key: [] for key in ("half_ulp", "abs_change_sum", "drift", "net_drift", "sign_consistency", "abs_w0",
                                  "predicted_changed", "changed_bf16")}
    masks = {key: [] for key in ("eligible", "changed_bf16", "changed_fp32", "predicted_changed")}
    per_tensor = {}
    for name in sorted(w0):
        a0 = _as_float32(f"w0[{name!r}]", w0[name])
        wb = to_bf16(a0)
        if not np.array_equal(wb.astype(np.float32), a0):
            raise ValueError(f"Argument `w0[{name!r}]` must hold the bf16-rounded base (values exactly representable in bf16).")
        a1 = _as_float32(f"w1[{name!r}]", w1[name])
        require_same_shape(f"w0[{name!r}]", a0, f"w1[{name!r}]", a1)
        cs = _values(f"change_sum[{name!r}]", change_sum[name], a0.shape)
        acs = _nonnegative(f"abs_change_sum[{name!r}]", abs_change_sum[name], a0.shape)
        elig = _bool_mask(f"grad_seen[{name!r}]", grad_seen[name], a0.shape)
        consistency = _sign_consistency_values(cs, acs, name_cs=f"change_sum[{name!r}]")
        h = _half_ulp_of_bf16(wb)
        drift = np.abs(a1.astype(np.float64) - a0.astype(np.float64))
        ch_bf16 = changed_mask_bitwise(wb, to_bf16(a1))
        ch_fp32 = changed_mask_fp32(a0, a1)
        pred = np.abs(cs) >= h  # predict_changed_from_drift with drift = change_sum
        n_elig = int(np.count_nonzero(elig))
        per_tensor[name] = {
            "n": int(a0.size),
            "relative_update_norm": _json_float(relative_update_norm(a0, a1)) if a0.ndim == 2 else None,
            "sparsity_bf16": sparsity(ch_bf16),
            "sparsity_bf16_eligible": _json_float(1.0 - np.count_nonzero(ch_bf16 & elig) / n_elig) if n_elig else None,
            "untouched_share": 1.0 - n_elig / a0.size,
            "drift_ratio": _json_float(_median_or_nan((drift / h)[elig])),
        }
        for key, arr in (("half_ulp", h), ("abs_change_sum", acs), ("drift", drift), ("net_drift", np.abs(cs)),
                         ("sign_consistency", np.where(acs > 0, consistency, np.nan)), ("abs_w0", np.abs(a0.astype(np.float64))),
                         ("predicted_changed", pred), ("changed_bf16", ch_bf16)):
            pooled[key].append(arr[elig])
        for key, arr in (("eligible", elig), ("changed_bf16", ch_bf16), ("changed_fp32", ch_fp32), ("predicted_changed", pred)):
            masks[key].append(arr.ravel())
    p = {key: np.concatenate(v) for key, v in pooled.items()}
    m = {key: np.concatenate(v) for key, v in masks.items()}
    split_bf16 = _split_counts(m["changed_bf16"], m["eligible"])
    split_fp32 = _split_counts(m["changed_fp32"], m["eligible"])
    n, n_elig = split_bf16["n"], split_bf16["n_eligible"]
    h, acs = p["half_ulp"], p["abs_change_sum"]
    consistency = p["sign_consistency"]
    c_med = _median_or_nan(consistency[~np.isnan(consistency)])
    step_fraction = _median_or_nan(acs / (rate * t))
    inverse_half_ulp = _median_or_nan(1.0 / h)  # lr_ratio and walk_ratio are this times lr, lr sqrt(T)
    regime_pred = regime_pred_measured = dist_pred = drift_pred = float("nan")
    if n_elig:
        levels, counts, _ = _half_ulp_levels(h)
        drift_pred = 1.0 - float(np.mean(p["predicted_changed"]))
        dist_pred = 1.0 - float(np.dot(counts, _drift_distribution_probability(levels, p["net_drift"]))) / n_elig
        if np.isfinite(c_med):
            regime_pred = _gaussian_sparsity(levels, counts, rate * t * c_med)
            regime_pred_measured = _gaussian_sparsity(levels, counts, step_fraction * rate * t * c_med)
    return {
        "steps": t,
        "lr": rate,
        "n": n,
        "step_ratio": _json_float(_median_or_nan(acs / t / h)),
        "drift_ratio": _json_float(_median_or_nan(p["drift"] / h)),
        "walk_ratio": _json_float(inverse_half_ulp * rate * np.sqrt(t)),
        "sign_consistency": _json_float(c_med),
        "lr_ratio": _json_float(inverse_half_ulp * rate),
        "step_fraction": _json_float(step_fraction),
        "median_abs_w0": _json_float(_median_or_nan(p["abs_w0"])),
        "relative_update_norm": _json_float(_median_or_nan(np.asarray(
            [v["relative_update_norm"] for v in per_tensor.values() if v["relative_update_norm"] is not None], np.float64))),
        "untouched_share": split_bf16["untouched_share"],
        "sparsity_bf16_all": split_bf16["sparsity_all"],
        "sparsity_bf16_eligible": _json_float(split_bf16["sparsity_eligible"]),
        "sparsity_fp32_all": split_fp32["sparsity_all"],
        "sparsity_fp32_eligible": _json_float(split_fp32["sparsity_eligible"]),
        "predicted_sparsity_from_drift": _json_float(drift_pred),
        "predicted_sparsity_from_drift_all": sparsity(m["predicted_changed"]),
        "drift_prediction_misses": int(np.count_nonzero(p["predicted_changed"] != p["changed_bf16"])),
        "predicted_sparsity_from_drift_distribution": _json_float(dist_pred),
        "predicted_sparsity_from_regime": _json_float(regime_pred),
        "predicted_sparsity_from_regime_measured_step": _json_float(regime_pred_measured),
        "per_tensor": per_tensor,
    }
