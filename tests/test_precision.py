"""Gate III (theory/precision.py): bf16 rounding, ULP, visibility, change probes, storage regimes."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.strategies import float32_any
from theory import precision as P

BF16 = ml_dtypes.bfloat16
MAX_BF16 = float(ml_dtypes.finfo(BF16).max)


def rne_oracle(x32: float) -> int:
    """Independent round-to-nearest-even float32 -> bf16 on the bit pattern (finite inputs).

    Keep the top 16 bits; round up when the dropped 16 bits exceed half, or equal half with an odd
    kept part. Sign-magnitude makes "up" mean larger magnitude; a carry into the exponent is right,
    and a carry out of the largest finite value gives the inf pattern 0x7F80.
    """
    b = int(np.array(x32, dtype=np.float32).view(np.uint32))
    upper, lower = b >> 16, b & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return upper


def bits_of(x) -> int:
    return int(np.asarray(x).view(np.uint16))


def bf16_from_bits(b: int) -> float:
    return float(np.array(b, dtype=np.uint16).view(BF16))


# float32 bit patterns: any finite value, plus exact bf16 ties (low half exactly 0x8000).
finite_f32_bits = st.integers(0, 2**32 - 1).filter(lambda b: (b >> 23) & 0xFF != 0xFF)
tie_f32_bits = st.integers(0, 2**16 - 1).map(lambda u: (u << 16) | 0x8000).filter(lambda b: (b >> 23) & 0xFF != 0xFF)
f32_by_bits = st.one_of(finite_f32_bits, tie_f32_bits).map(
    lambda b: float(np.array(b, dtype=np.uint32).view(np.float32))
)
f32_values = st.lists(st.one_of(f32_by_bits, float32_any, st.sampled_from([0.0, -0.0, 3.4e38, -3.39e38])), min_size=1, max_size=32)
# Local bf16 strategy: tests/strategies.py `bf16_finite` passes min_value=-3.0e38 with width=32, which
# hypothesis rejects (not exactly representable in float32). Drawn from finite bf16 bit patterns instead,
# so subnormals, signed zeros and the largest finite values all appear.
bf16_finite = st.integers(0, 0xFFFF).filter(lambda b: (b >> 7) & 0xFF != 0xFF).map(
    lambda b: float(np.array(b, dtype=np.uint16).view(BF16))
)
bf16_normal = bf16_finite.filter(lambda x: abs(x) >= P.MIN_NORMAL)


# ----------------------------------------------------------------------------------------------
# Rounding
# ----------------------------------------------------------------------------------------------


@given(f32_values)
def test_jax_cast_equals_ml_dtypes_bitwise(xs):
    x = np.array(xs, dtype=np.float32)
    ref = P.to_bf16(x).view(np.uint16)
    got = np.asarray(P.to_bf16_jax(x)).view(np.uint16)
    np.testing.assert_array_equal(got, ref)


@given(f32_values)
def test_ml_dtypes_equals_bit_level_oracle(xs):
    x = np.array(xs, dtype=np.float32)
    got = P.bf16_bits(x)
    want = np.array([rne_oracle(v) for v in x], dtype=np.uint16)
    np.testing.assert_array_equal(got, want)


def test_rounding_special_cases():
    # ties to even, signed zero, subnormal, overflow to inf as the cast does
    assert P.bf16_bits(np.float32(1 + 2**-8)) == 0x3F80  # tie, 1.0 is even: stays
    assert P.bf16_bits(np.float32(1 + 3 * 2**-8)) == 0x3F82  # tie, odd kept part: up
    assert P.bf16_bits(np.float32(-0.0)) == 0x8000
    assert P.bf16_bits(np.float32(2**-130)) == 0x0008
    assert P.bf16_bits(np.float32(3.4e38)) == 0x7F80
    assert np.asarray(P.to_bf16_jax(np.float32(3.4e38))).view(np.uint16) == 0x7F80


@given(st.floats(min_value=-3.0e38, max_value=3.0e38, allow_nan=False, width=64))
def test_float64_rounds_once(x):
    """to_bf16 on float64 is the correctly rounded value (exact Fraction oracle), no double rounding."""
    got = float(P.to_bf16(np.float64(x)).astype(np.float64))
    via32 = int(P.bf16_bits(np.float32(x))) & 0x7FFF
    cands = [m for m in (via32 - 1, via32, via32 + 1) if 0 <= m <= 0x7F7F]
    fx = abs(Fraction(x))
    best = min(cands, key=lambda m: (abs(Fraction(bf16_from_bits(m)) - fx), m & 1))
    assert abs(got) == bf16_from_bits(best)
    assert got == 0 or np.sign(got) == np.sign(x)


def test_float64_double_rounding_counterexample():
    x = 1 + 2**-8 + 2**-40
    assert float(np.array(x).astype(BF16)) == 1.0  # ml_dtypes' float64 cast double-rounds
    assert float(P.to_bf16(x).astype(np.float64)) == 1 + 2**-7


# ----------------------------------------------------------------------------------------------
# ULP and visibility
# ----------------------------------------------------------------------------------------------


@given(bf16_normal)
def test_ulp_ratio_band_and_spacing(x):
    u = float(P.ulp_bf16(x))
    r = u / abs(x)
    assert 2.0**-8 < r <= 2.0**-7
    b = bits_of(P.to_bf16(abs(x)))
    if b < 0x7F7F:
        assert bf16_from_bits(b + 1) - abs(x) == u  # ULP is the spacing above |x|


def test_ulp_zero_and_subnormal():
    np.testing.assert_array_equal(P.ulp_bf16([0.0, -0.0, 2.0**-133, 2.0**-127, 2.0**-126]), [2.0**-133] * 5)
    assert float(P.ulp_bf16(2.0**-125)) == 2.0**-132


@given(bf16_finite, st.sampled_from([1, -1]))
def test_visibility_threshold_is_exact(w, direction):
    gap, tie_visible = P.visibility_threshold(np.float64(w), direction)
    gap = float(gap)
    assert P.is_visible(w, direction * gap) == bool(tie_visible)
    assert P.is_visible(w, direction * np.nextafter(gap, np.inf))
    assert not P.is_visible(w, direction * np.nextafter(gap, 0.0))


@given(bf16_finite, st.integers(-9, 9), st.floats(-1.0, 1.0))
def test_half_ulp_rule_agrees_except_documented_cases(w, k, frac):
    u = float(P.ulp_bf16(w))
    for d in (k * u / 8, (k + frac) * u / 8):
        kind = int(P.disagreement_kind(w, d))
        assert kind != P.OTHER
        rule, exact = bool(P.half_ulp_rule(w, d)), bool(P.is_visible(w, d))
        assert (rule == exact) == (kind == P.AGREE)


def test_half_ulp_rule_counterexamples_exist():
    # tie to even: |d| == ULP/2 on an even mantissa is kept, the rule says visible
    assert P.half_ulp_rule(1.0, 2**-8) and not P.is_visible(1.0, 2**-8)
    assert int(P.disagreement_kind(1.0, 2**-8)) == P.TIE_TO_EVEN
    assert int(P.disagreement_kind(0.0, 2.0**-134)) == P.TIE_TO_EVEN
    # below a power of two: ULP/4 < |d| < ULP/2 toward zero is visible, the rule says not
    d = -3 * 2**-10
    assert not P.half_ulp_rule(1.0, d) and P.is_visible(1.0, d)
    assert float(P.bf16_add(1.0, d).astype(np.float64)) == 1 - 2**-8
    assert int(P.disagreement_kind(-1024.0, 3.0)) == P.BELOW_POWER_OF_TWO
    # odd mantissa tie: rule and exact agree (tie rounds away to the even neighbour)
    assert P.is_visible(1 + 2**-7, 2**-8) and P.half_ulp_rule(1 + 2**-7, 2**-8)


def test_float32_arithmetic_double_rounding_loses_update():
    d = 2**-8 + 2**-30
    assert P.is_visible(1.0, d) and not P.is_visible(1.0, d, exact=False)


# ----------------------------------------------------------------------------------------------
# Probes
# ----------------------------------------------------------------------------------------------

pairs = st.tuples(bf16_finite, st.integers(-3, 3), bf16_finite, st.booleans())


@given(pairs, st.sampled_from([1e-3, 2.0**-9, 2.0**-8 * 0.999, 1e-6]))
def test_relative_probe_equals_bitwise(pair, eta):
    w0, step, other, use_other = pair
    if use_other:
        w1 = other
    else:  # a near neighbour in bit space: the hard case for a tolerance
        b = bits_of(P.to_bf16(w0))
        nb = b + step
        assume((b & 0x7FFF) + step >= 0 and ((nb & 0x7FFF) <= 0x7F7F) and (nb >> 15) == (b >> 15))
        w1 = bf16_from_bits(nb)
    rel = P.changed_mask_relative(np.float64(w0), np.float64(w1), eta=eta)
    bit = P.changed_mask_bitwise(np.float64(w0), np.float64(w1))
    assert bool(rel) == bool(bit)


def test_relative_probe_tightness_and_signed_zeros():
    w0, w1 = np.float64(2 - 2**-7), np.float64(2.0)  # |dw| / max = 2^-8 exactly
    assert P.changed_mask_relative(w0, w1, eta=2.0**-8 * 0.999)
    assert not P.changed_mask_relative(w0, w1, eta=2.0**-8)  # eta = 2^-8 is already too large
    z0, z1 = np.array([0.0, -0.0]), np.array([-0.0, 0.0])
    assert not P.changed_mask_relative(z0, z1).any()
    assert not P.changed_mask_bitwise(z0, z1).any()
    assert P.changed_mask_bitwise(z0, z1, zero_sign_counts=True).all()


@given(st.floats(1024.0, 2047.0, width=32), st.floats(1e-3, 1.9))
def test_absolute_probe_false_positive_for_large_weights(w, d):
    w0 = np.array([P.to_bf16(np.float32(w)).astype(np.float32)])
    w1 = w0 + np.float32(d)  # float32 update above tol (and above float32 spacing) but below the bf16 gap
    c = P.probe_confusion(w0, w1)
    assert c["false_positive"] == 1 and c["false_negative"] == 0


@given(st.floats(2.0**-20, 2.0**-19, exclude_max=True), st.integers(1, 100))
def test_absolute_probe_false_negative_for_tiny_weights(w, k):
    b = bits_of(P.to_bf16(np.float64(w)))
    w0 = np.array([bf16_from_bits(b)], dtype=np.float32)
    w1 = np.array([bf16_from_bits(min(b + k, 0x7F7F))], dtype=np.float32)  # k steps of 2^-27 (or 2^-26)
    c = P.probe_confusion(w0, w1)
    assert c["false_negative"] == 1 and c["false_positive"] == 0


def test_checkpoint_sparsity():
    p0 = {"a": np.array([1.0, 2.0, 0.0, -0.0], dtype=np.float32), "b": np.full((2, 3), 1024.0, np.float32)}
    p1 = {"a": np.array([1.0078125, 2.0, -0.0, 0.0], dtype=np.float32), "b": np.full((2, 3), 1032.0, np.float32)}
    out = P.checkpoint_sparsity(p0, p1)
    assert out["per_tensor"] == {"a": 0.75, "b": 0.0}
    assert out["overall"] == pytest.approx(3 / 10)
    assert P.checkpoint_sparsity(p0, p1, probe="bitwise")["overall"] == pytest.approx(3 / 10)
    assert P.sparsity(np.array([True, False, False, False])) == 0.75


# ----------------------------------------------------------------------------------------------
# Storage regimes
# ----------------------------------------------------------------------------------------------


@given(bf16_normal.filter(lambda x: abs(x) < 1e30), st.floats(0.05, 0.95), st.integers(2, 60), st.sampled_from([1, -1]))
def test_sub_threshold_steps_lost_in_bf16_kept_in_fp32_master(w, frac, steps, direction):
    gap, _ = P.visibility_threshold(np.float64(w), direction)
    d = np.float32(direction * float(gap) * frac)
    seq = np.full((steps, 1), d, dtype=np.float32)
    w0 = np.array([w], dtype=np.float32)
    every = P.apply_bf16_every_step(w0, seq)
    assert float(every[0]) == w  # every single step is invisible, so nothing accumulates
    master = P.apply_fp32_master(w0, seq)
    acc = float(np.sum(seq, dtype=np.float64))
    if abs(acc) > 2 * float(P.ulp_bf16(w)):  # accumulated change well past the threshold
        assert float(master[0]) != w
    np.testing.assert_array_equal(np.asarray(P.apply_bf16_every_step_jax(w0, seq)).view(np.uint16), every.view(np.uint16))


def test_storage_regime_constructed_example():
    w = np.ones(4, dtype=np.float32)
    seq = np.full((8, 4), 2.0**-9, dtype=np.float32)  # ULP(1)/4 each; 8 of them = 2^-6
    assert P.sparsity(P.changed_mask_bitwise(w, P.apply_bf16_every_step(w, seq))) == 1.0
    master = P.apply_fp32_master(w, seq)
    assert P.sparsity(P.changed_mask_bitwise(w, master)) == 0.0
    np.testing.assert_array_equal(master.astype(np.float64), 1 + 2**-6)
    np.testing.assert_array_equal(np.asarray(P.apply_fp32_master_jax(w, seq)).view(np.uint16), master.view(np.uint16))


@given(st.lists(bf16_normal.filter(lambda x: 1e-30 < abs(x) < 1e30), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_jax_regimes_match_numpy_float32(ws, seed):
    w = np.array(ws, dtype=np.float32)
    rng = np.random.default_rng(seed)
    seq = (rng.standard_normal((5, w.size)) * np.abs(w) * 2.0**-8).astype(np.float32)
    a = P.apply_bf16_every_step(w, seq, exact=False).view(np.uint16)
    np.testing.assert_array_equal(np.asarray(P.apply_bf16_every_step_jax(w, seq)).view(np.uint16), a)
    b = P.apply_fp32_master(w, seq).view(np.uint16)
    np.testing.assert_array_equal(np.asarray(P.apply_fp32_master_jax(w, seq)).view(np.uint16), b)


def test_predicted_visible_share():
    w = np.array([1.0, 1.0, 1.0, 1024.0], dtype=np.float32)
    d = np.array([2.0**-8, -3 * 2.0**-10, 1.0, 1.0], dtype=np.float32)
    out = P.predicted_visible_share(w, d)
    assert out == {"exact": 0.5, "half_ulp": 0.5, "disagree": 2, "n": 4}


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------

nan = np.array([1.0, np.nan])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: P.to_bf16(np.array([])), "x"),
        (lambda: P.ulp_bf16(nan), "x"),
        (lambda: P.is_visible(nan, np.ones(2)), "w"),
        (lambda: P.is_visible(np.ones(2), nan), "d"),
        (lambda: P.is_visible(np.ones(2), np.ones(3)), "d"),
        (lambda: P.half_ulp_rule(np.array([]), 1.0), "w"),
        (lambda: P.visibility_threshold(1.0, 0), "direction"),
        (lambda: P.changed_mask_relative(np.ones(2), np.ones(2), eta=0.0), "eta"),
        (lambda: P.changed_mask_relative(np.ones(2), np.ones(2), eta=1.0), "eta"),
        (lambda: P.changed_mask_relative(nan, np.ones(2)), "w0"),
        (lambda: P.changed_mask_relative(np.ones(2), np.ones(3)), "w1"),
        (lambda: P.changed_mask_absolute(np.ones(2), np.ones(2), tol=0.0), "tol"),
        (lambda: P.changed_mask_absolute(np.ones(2), np.array([np.inf, 1.0])), "w1"),
        (lambda: P.changed_mask_bitwise(np.ones(2), nan), "w1"),
        (lambda: P.sparsity(np.array([], dtype=bool)), "mask"),
        (lambda: P.checkpoint_sparsity({}, {}), "params0"),
        (lambda: P.checkpoint_sparsity({"a": np.ones(2)}, {"b": np.ones(2)}), "a"),
        (lambda: P.checkpoint_sparsity({"a": np.ones(2)}, {"a": np.ones(3)}), "params1['a']"),
        (lambda: P.checkpoint_sparsity({"a": np.ones(2)}, {"a": np.ones(2)}, probe="l2"), "probe"),
        (lambda: P.probe_confusion(np.ones(2), np.ones(2), tol=-1.0), "tol"),
        (lambda: P.predicted_visible_share(np.ones(2), np.ones(3)), "d_fp32"),
        (lambda: P.apply_bf16_every_step(np.ones(2), np.ones((3, 4))), "deltas_seq"),
        (lambda: P.apply_fp32_master(np.ones(2), np.array([[1.0, np.nan]])), "deltas_seq"),
        (lambda: P.apply_fp32_master_jax(np.array([np.nan]), np.ones((1, 1))), "w_fp32"),
    ],
)
def test_bad_inputs_raise_naming_argument(call, name):
    with pytest.raises(ValueError, match=f"`{__import__('re').escape(name)}`"):
        call()
