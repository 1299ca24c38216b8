"""Gate III: bf16 precision (SCIENCE.md section 3 "Gate III", claims C2, C6, C9; section 4 metrics).

Contents
- rounding to bf16 (ml_dtypes reference, JAX cast), uint16 bit views, the bf16 ULP;
- exact visibility of an update to a stored bf16 weight, the paper's half-ULP rule, and the exact
  threshold in each direction (so the rule's errors can be counted);
- the change probes: relative (paper, eta = 1e-3), absolute (Mukherjee et al., tol = 1e-5), bitwise;
  sparsity per tensor and per checkpoint; confusion of the absolute probe against bitwise truth;
- the two storage regimes: bf16 every step, and fp32 master weights with a bf16 export.

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


def _round_sum_to_bf16(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Correctly round the exact real ``s + err`` (float64 ``s``, tiny ``err``) to bf16.

    Round to odd from float64 to float32 (inexact results get an odd last bit), then ml_dtypes'
    round-to-nearest-even from float32 to bf16: with float32 carrying more than 2 extra bits, this
    double rounding equals a single rounding of the exact value. ``err`` only breaks ties.
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
        t = np.where(need, np.nextafter(t, toward), t).astype(np.float32)
    return t.astype(BF16)


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
    on float32 inputs (DESIGN.md, bf16 convention). float64 inputs are first rounded to float32."""
    require_nonempty("x", x)
    return _to_bf16_jax(x)


def bf16_bits(x) -> np.ndarray:
    """The uint16 bit patterns of ``to_bf16(x)`` (bf16 inputs unchanged): sign, 8 exponent, 7 mantissa bits."""
    return to_bf16(np.asarray(x)).view(np.uint16)


def ulp_bf16(x) -> np.ndarray:
    """bf16 unit in the last place of the binade of ``x`` (SCIENCE.md Gate III, claim C9).

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


def _stored(name: str, w) -> np.ndarray:
    """Finite, non-empty bf16 stored weights (inputs that are not bf16 are rounded)."""
    a = np.asarray(w)
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
    """The paper's bf16-aware probe (SCIENCE.md section 4, claim C2): True where a weight changed.

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
    """Update sparsity (SCIENCE.md section 4): 1 - #changed / #params of a boolean changed mask."""
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
    (w0, w1) -> changed mask. Returns {"per_tensor": {name: sparsity}, "changed": {name: int},
    "size": {name: int}, "overall": float}; overall counts every parameter once (size-weighted).
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
        try:
            m = fn(a, b)
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
