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


# ----------------------------------------------------------------------------------------------
# Regime numbers (docs/science.md section 7)
# ----------------------------------------------------------------------------------------------

H1 = 2.0**-8  # half-ULP of weights in [1, 2)


def bf16_weights(rng, n, scale=0.1, avoid_powers_of_two=False):
    """float32 weights exactly representable in bf16 (normal draws rounded)."""
    w = P.to_bf16(rng.normal(0.0, scale, n).astype(np.float32))
    if avoid_powers_of_two:
        bits = w.view(np.uint16)
        w = np.where((bits & 0x7F) == 0, P.to_bf16(np.float32(1.5) * w.astype(np.float32)), w).astype(BF16)
        assert not np.any((w.view(np.uint16) & 0x7F) == 0)
    return w.astype(np.float32)


def test_half_ulp_bf16_hand_cases():
    w = [1.0, 1.5, 1.999, 2.0, -2.0, -3.0, 0.5, 0.0, -0.0, 2.0**-130, 2.0**-126, 2.0**-125, 1024.0]
    want = [2**-8, 2**-8, 2**-7, 2**-7, 2**-7, 2**-7, 2**-9, 2.0**-134, 2.0**-134, 2.0**-134, 2.0**-134, 2.0**-133, 4.0]
    np.testing.assert_array_equal(P.half_ulp_bf16(np.array(w)), want)  # 1.999 stores as 2.0: the half-ULP doubles


@given(bf16_normal)
def test_half_ulp_bf16_band(x):
    h = float(P.half_ulp_bf16(x))
    assert 2.0**-9 < h / abs(x) <= 2.0**-8
    assert h == float(P.ulp_bf16(x)) / 2


def test_step_ratio_hand_cases():
    T = 4
    w0 = np.array([1.0, 2.0, -0.5, 3.0], dtype=np.float32)
    acs = np.array([T * H1, T * H1, 0.0, T * 2**-7])  # ratios 1, 0.5, (not moved), 1
    assert P.step_ratio(w0, acs, T) == 1.0
    assert P.step_ratio(w0, acs, T, moved=np.ones(4, dtype=bool)) == 0.75  # median of 1, 0.5, 0, 1
    assert P.step_ratio(np.array([0.0]), np.array([T * 5 * 2.0**-134]), T) == 5.0  # zero: half-ULP 2^-134
    assert np.isnan(P.step_ratio(w0, np.zeros(4), T))


# bf16 values of moderate magnitude, built from sign, exponent and 7 mantissa bits (no filtering)
bf16_moderate = st.tuples(st.sampled_from([1.0, -1.0]), st.integers(-60, 60), st.integers(0, 127)).map(
    lambda t: t[0] * (1 + t[2] / 128) * 2.0 ** t[1]
)


@given(st.lists(bf16_moderate, min_size=1, max_size=16), st.integers(0, 2**31 - 1), st.floats(0.01, 100.0), st.integers(1, 1000))
def test_step_ratio_linear_in_change(ws, seed, k, steps):
    w0 = np.array(ws, dtype=np.float32)
    acs = np.random.default_rng(seed).uniform(0.0, 1.0, w0.size) * np.abs(w0)
    base = P.step_ratio(w0, acs, steps)
    assume(np.isfinite(base))
    assert P.step_ratio(w0, k * acs, steps) == pytest.approx(k * base, rel=1e-12)
    assert P.step_ratio(w0, acs, 2 * steps) == pytest.approx(base / 2, rel=1e-12)


def test_drift_ratio_hand_cases():
    w0 = np.array([1.0, 2.0, 2.0], dtype=np.float32)
    w1 = np.array([1 + 2**-8, 2 - 2**-8, 2.0], dtype=np.float32)  # measured against half-ULP(w0): 1, 0.5, 0
    assert P.drift_ratio(w0, w1) == 0.75  # default: weights whose master value changed
    assert P.drift_ratio(w0, w1, moved=np.ones(3, dtype=bool)) == 0.5
    assert np.isnan(P.drift_ratio(w0, w0))
    assert P.drift_ratio(w0, w0, moved=np.ones(3, dtype=bool)) == 0.0


@given(st.lists(bf16_finite, min_size=1, max_size=16))
def test_drift_ratio_zero_without_change(ws):
    w0 = np.array(ws, dtype=np.float32)
    assert P.drift_ratio(w0, w0.copy(), moved=np.ones(w0.shape, dtype=bool)) == 0.0


def test_walk_ratio_hand_cases():
    assert P.walk_ratio(2.0**-8, 4, np.array([1.0])) == 2.0  # lr sqrt(T) / half-ULP = 2^-7 / 2^-8
    w0 = np.array([1.0, 2.0, 4.0])  # ratios 2, 1, 0.5
    assert P.walk_ratio(2.0**-8, 4, w0) == 1.0
    assert P.walk_ratio(2.0**-8, 4, w0, moved=np.array([True, False, False])) == 2.0


def test_sign_consistency_hand_cases():
    assert P.sign_consistency([1.0, -1.0, 0.5, 0.0], [1.0, 1.0, 1.0, 0.0]) == 1.0  # 1, 1, 0.5; the unmoved one left out
    assert P.sign_consistency([0.5, -0.25, 0.0], [1.0, 1.0, 1.0]) == 0.25
    assert P.sign_consistency([0.5, -0.25, 0.0], [1.0, 1.0, 1.0], moved=np.array([True, False, False])) == 0.5
    assert np.isnan(P.sign_consistency([0.0], [0.0]))
    assert P.sign_consistency([1.0 + 1e-6], [1.0]) == 1.0  # float32 accumulation slack is clipped
    with pytest.raises(ValueError, match="`change_sum`"):
        P.sign_consistency([1.1], [1.0])


@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 8), st.booleans())
def test_sign_consistency_range_and_monotone(seed, steps, n, monotone):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(steps, n)).astype(np.float32)
    if monotone:
        d = np.abs(d) * rng.choice([-1.0, 1.0], size=n).astype(np.float32)
    cs, acs = d.sum(axis=0), np.abs(d).sum(axis=0)
    c = P.sign_consistency(cs, acs)
    assert 0.0 <= c <= 1.0
    if monotone:
        assert c == 1.0


def test_sign_consistency_random_walk():
    """T equal steps of random sign: mean |S_T| / T ~ sqrt(2 / (pi T)); the median (returned) ~ 0.674 / sqrt(T)."""
    T, n = 400, 20000
    rng = np.random.default_rng(1)
    s = 2.0 * rng.binomial(T, 0.5, n) - T
    a = 1e-4
    ratio_mean = float(np.mean(np.abs(a * s) / (a * T)))
    assert ratio_mean == pytest.approx(np.sqrt(2 / (np.pi * T)), rel=0.03)
    med = P.sign_consistency(a * s, np.full(n, a * T))
    assert med == pytest.approx(P.Z_QUARTILE / np.sqrt(T), rel=0.12)  # |S_T| takes even values only
    assert med < 0.95 * np.sqrt(2 / (np.pi * T))  # the median is not the mean


def test_relative_update_norm():
    W0 = np.array([[3.0, 0.0], [0.0, 4.0]])
    assert P.relative_update_norm(W0, W0 + np.array([[0.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.2)
    assert P.relative_update_norm(W0, W0) == 0.0
    assert np.isnan(P.relative_update_norm(np.zeros((2, 2)), np.ones((2, 2))))


def test_changed_mask_fp32_sees_what_bf16_export_hides():
    w0 = np.array([1.0, 1.0, 0.0, -0.0, 2.0, 1.0], dtype=np.float32)
    w1 = np.array([1 + 2**-20, 1.0, -0.0, 0.0, 2 + 2**-8, 1 + 2**-7], dtype=np.float32)
    np.testing.assert_array_equal(P.changed_mask_fp32(w0, w1), [True, False, False, False, True, True])
    np.testing.assert_array_equal(P.changed_mask_bitwise(w0, w1), [False, False, False, False, False, True])
    # the old "fp32 control": the bitwise probe on fp32 master weights sees only the bf16 exports
    assert P.sparsity(P.changed_mask_bitwise(w0, w1)) == 5 / 6 and P.sparsity(P.changed_mask_fp32(w0, w1)) == 0.5
    assert P.changed_mask_fp32(P.to_bf16(w0), P.to_bf16(w0)).sum() == 0  # bf16 inputs upcast exactly
    with pytest.raises(ValueError, match="`w1`"):
        P.changed_mask_fp32(np.ones(1), np.array([1 + 2.0**-40]))  # float64 that float32 cannot hold


float32_bf16_range = st.floats(float(np.float32(-3e38)), float(np.float32(3e38)), width=32)  # rounds to a finite bf16


@given(st.lists(st.tuples(float32_bf16_range, float32_bf16_range, st.booleans()), min_size=1, max_size=16))
def test_changed_mask_fp32_is_numeric_inequality(triples):
    a = np.array([x for x, _, _ in triples], dtype=np.float32)
    b = np.array([x if same else y for x, y, same in triples], dtype=np.float32)
    fp32 = P.changed_mask_fp32(a, b)
    np.testing.assert_array_equal(fp32, a != b)
    assert not np.any(P.changed_mask_bitwise(a, b) & ~fp32)  # a bf16-visible change is an fp32 change


def test_sparsity_split():
    changed = np.array([True, False, False, True])
    eligible = np.array([True, True, False, False])
    out = P.sparsity_split(changed, eligible)
    assert out == {"n": 4, "n_eligible": 2, "n_untouched": 2, "untouched_share": 0.5, "n_changed": 2,
                   "n_changed_eligible": 1, "n_changed_untouched": 1, "sparsity_all": 0.5, "sparsity_eligible": 0.5}
    d = P.sparsity_split({"a": changed, "b": np.zeros(6, dtype=bool)}, {"a": eligible, "b": np.ones(6, dtype=bool)})
    assert d["n"] == 10 and d["n_eligible"] == 8 and d["sparsity_all"] == pytest.approx(0.8)
    assert d["sparsity_eligible"] == pytest.approx(1 - 1 / 8) and d["untouched_share"] == pytest.approx(0.2)
    assert d["per_tensor"]["a"] == out and d["per_tensor"]["b"]["sparsity_eligible"] == 1.0
    assert np.isnan(P.sparsity_split(changed, np.zeros(4, dtype=bool))["sparsity_eligible"])


# ----------------------------------------------------------------------------------------------
# Sparsity predictors
# ----------------------------------------------------------------------------------------------


def test_predict_changed_from_drift_boundaries():
    w0 = np.array([1.0, 1.0 + 2**-7, 1.0, 1.0, 0.0, 2.0], dtype=np.float32)
    d = np.array([H1, H1, -0.7 * H1, -1.3 * H1, 2.0**-134, 0.99 * 2**-7])
    pred = P.predict_changed_from_drift(w0, d)
    exact = P.changed_mask_bitwise(w0, P.bf16_add(w0, d))
    np.testing.assert_array_equal(pred, [True, True, False, True, True, False])
    np.testing.assert_array_equal(exact, [False, True, True, True, False, False])  # ties to even, below 1.0, zero tie
    kinds = P.disagreement_kind(w0, d)
    np.testing.assert_array_equal(pred != exact, kinds != P.AGREE)
    assert P.predict_sparsity_from_drift(w0, d) == pytest.approx(2 / 6)


def test_predict_changed_from_drift_exact_on_planted_drifts():
    rng = np.random.default_rng(2)
    n = 6000
    w0 = bf16_weights(rng, n, avoid_powers_of_two=True)
    multiple = rng.choice([0.0, 0.3, 0.7, 0.95, 1.05, 1.3, 2.6, 7.3], size=n)
    drift = multiple * rng.choice([-1.0, 1.0], size=n) * P.half_ulp_bf16(w0)
    planted = multiple >= 1
    pred = P.predict_changed_from_drift(w0, drift)
    np.testing.assert_array_equal(pred, planted)
    np.testing.assert_array_equal(P.changed_mask_bitwise(w0, P.to_bf16(w0.astype(np.float64) + drift)), planted)
    assert P.predict_sparsity_from_drift(w0, drift) == pytest.approx(1 - planted.mean())
    # at powers of two a step toward zero of 0.7 half-ULP is visible: the rule's documented miss
    p2 = np.array([1.0, -4.0, 0.25], dtype=np.float32)
    toward = -0.7 * np.sign(p2) * P.half_ulp_bf16(p2)
    assert not P.predict_changed_from_drift(p2, toward).any()
    assert P.changed_mask_bitwise(p2, P.to_bf16(p2.astype(np.float64) + toward)).all()
    assert (P.disagreement_kind(p2, toward) == P.BELOW_POWER_OF_TWO).all()


@given(bf16_finite, st.integers(-24, 24), st.floats(-1.0, 1.0))
def test_predict_changed_from_drift_disagrees_only_on_known_set(w, k, frac):
    u = float(P.ulp_bf16(w))
    for d in (k * u / 16, (k + frac) * u / 16):
        pred = bool(P.predict_changed_from_drift(w, d))
        exact = bool(P.is_visible(w, d))
        assert (pred != exact) == (int(P.disagreement_kind(w, d)) != P.AGREE)


def test_change_probability_hand_cases():
    import math

    w0 = np.array([1.0, 2.0, 0.0])
    p = P.change_probability_from_regime(w0, lr=H1 / 4, steps=4, sign_consistency=1.0)  # D = 2^-8
    assert p[0] == pytest.approx(0.5, abs=1e-12)  # the median |drift| sits at the half-ULP
    assert p[1] == pytest.approx(math.erfc(2 * P.Z_QUARTILE / math.sqrt(2)), rel=1e-12)  # half-ULP doubles at 2
    assert p[2] == pytest.approx(1.0)  # any drift of a zero shows
    assert P.predict_sparsity_from_regime(w0, H1 / 4, 4, 1.0) == pytest.approx(1 - p.mean(), rel=1e-12)
    np.testing.assert_array_equal(P.change_probability_from_regime(w0, 1e-3, 10, 0.0), 0.0)
    assert P.predict_sparsity_from_regime(w0, H1 / 8, 4, 1.0, step_fraction=2.0) == pytest.approx(
        P.predict_sparsity_from_regime(w0, H1 / 4, 4, 1.0), rel=1e-12)


def test_gaussian_model_matches_its_own_monte_carlo():
    rng = np.random.default_rng(3)
    n = 40000
    w0 = bf16_weights(rng, n, scale=0.05)
    h = P.half_ulp_bf16(w0)
    lr, T, c = 2e-5, 200, 0.06
    D = lr * T * c
    drift = rng.normal(0.0, D / P.Z_QUARTILE, n)
    assert np.median(np.abs(drift)) == pytest.approx(D, rel=0.03)
    predicted = P.predict_sparsity_from_regime(w0, lr, T, c)
    simulated = P.predict_sparsity_from_drift(w0, drift)
    se = np.sqrt(predicted * (1 - predicted) / n)
    assert 0.2 < predicted < 0.8
    assert abs(simulated - predicted) < 4 * se
    pv = P.change_probability_from_regime(w0, lr, T, c)
    mc = np.abs(drift) >= h
    for level in np.unique(h)[:4]:  # per half-ULP level too
        sel = h == level
        assert abs(mc[sel].mean() - pv[sel][0]) < 4 * np.sqrt(pv[sel][0] * (1 - pv[sel][0]) / sel.sum()) + 1e-9


@given(st.floats(1e-7, 1e-2), st.floats(1.01, 10.0), st.integers(1, 2000), st.integers(1, 4), st.floats(0.01, 1.0))
def test_predicted_sparsity_decreases_with_lr_and_steps(lr, factor, steps, more, c):
    w0 = np.array([0.01, -0.1, 0.3, 1.0, 2.0**-20, 0.0])
    s = P.predict_sparsity_from_regime(w0, lr, steps, c)
    assert 0.0 <= s <= 1.0
    assert P.predict_sparsity_from_regime(w0, lr * factor, steps, c) <= s
    assert P.predict_sparsity_from_regime(w0, lr, steps * (1 + more), c) <= s


def test_drift_for_sparsity_inverts_the_model():
    assert P.drift_for_sparsity(np.array([1.0]), 0.5) == pytest.approx(H1, rel=1e-9)
    rng = np.random.default_rng(4)
    w0 = bf16_weights(rng, 5000, scale=0.02)
    T, c = 1000, 0.05
    for target in (0.36, 0.5, 0.797, 0.92):
        D = P.drift_for_sparsity(w0, target)
        assert P.predict_sparsity_from_regime(w0, D / (T * c), T, c) == pytest.approx(target, abs=1e-9)


def test_change_probability_from_drift_distribution():
    w0 = np.array([1.0, 1.0, 2.0, 2.0])
    drift = np.array([H1, 0.0, 2**-7, 2**-9])  # sorted magnitudes 0, 2^-9, 2^-8, 2^-7
    np.testing.assert_array_equal(P.change_probability_from_drift_distribution(w0, drift), [0.5, 0.5, 0.25, 0.25])


def test_fit_quality():
    out = P.fit_quality([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert out["slope_through_origin"] == pytest.approx(2.0) and out["ols_slope"] == pytest.approx(2.0)
    assert out["ols_intercept"] == pytest.approx(0.0, abs=1e-12)
    assert out["r2"] == pytest.approx(1 - 14 / 8)  # residuals 1, 2, 3 against the spread of 2, 4, 6
    assert out["max_abs_miss"] == 3.0 and out["max_miss_index"] == 2 and out["n"] == 3
    perfect = P.fit_quality([0.1, 0.5, 0.9], [0.1, 0.5, 0.9])
    assert perfect["r2"] == 1.0 and perfect["max_abs_miss"] == 0.0
    keyed = P.fit_quality({"a": 0.5, "b": 0.2}, {"a": 0.45, "b": 0.4})
    assert keyed["max_miss_index"] == "b" and keyed["max_abs_miss"] == pytest.approx(0.2)
    assert np.isnan(P.fit_quality([1.0], [1.0])["r2"]) and np.isnan(P.fit_quality([1.0], [1.0])["ols_slope"])


# ----------------------------------------------------------------------------------------------
# Magnitude-stratified overlap
# ----------------------------------------------------------------------------------------------


def test_overlap_within_strata_hand_case():
    w0 = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])  # two strata: half-ULP 2^-8 and 2^-7
    region = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)  # alpha 1/2 and 1/4
    changed = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)  # stratum excess 1 - 1/2 and 1/3 - 1/4
    out = P.overlap_within_strata(changed, region, w0)
    assert out["excess"] == pytest.approx((1 * 0.5 + 3 * (1 / 3 - 1 / 4)) / 4)
    assert out["unstratified_excess"] == pytest.approx(2 / 4 - 3 / 8)
    assert out["overlap"] == 0.5 and out["expected_overlap"] == pytest.approx((0.5 + 3 * 0.25) / 4)
    # null (hypergeometric) variances: c alpha (1 - alpha) (n - c) / (n - 1) per stratum, over C^2
    assert out["standard_error"] == pytest.approx(np.sqrt(1 * 0.5 * 0.5 * 3 / 3 + 3 * 0.25 * 0.75 * 1 / 3) / 4)
    assert out["unstratified_standard_error"] == pytest.approx(np.sqrt(4 * 3 / 8 * 5 / 8 * 4 / 7) / 4)
    assert out["z"] == pytest.approx(out["excess"] / out["standard_error"])
    assert [s["log2_half_ulp"] for s in out["strata"]] == [-8, -7]
    assert [s["changed"] for s in out["strata"]] == [1, 3] and out["strata"][1]["alpha"] == 0.25
    as_dict = P.overlap_within_strata({"x": changed[:4], "y": changed[4:]}, {"x": region[:4], "y": region[4:]},
                                      {"x": w0[:4], "y": w0[4:]})
    assert as_dict["excess"] == pytest.approx(out["excess"]) and as_dict["excess_by_tensor"] == pytest.approx(out["excess"])
    assert [s["tensor"] for s in as_dict["strata"]] == ["x", "y"]
    assert np.isnan(P.overlap_within_strata(np.zeros(8, dtype=bool), region, w0)["excess"])


def _planted_overlap_case(seed, avoid):
    rng = np.random.default_rng(seed)
    n = 30000
    w0 = P.to_bf16(rng.lognormal(-3.0, 1.2, n) * rng.choice([-1, 1], n)).astype(np.float32)
    score = np.log(np.abs(w0)) + rng.normal(0.0, 1.0, n)  # region: correlated with magnitude, mixed within binades
    region = score > np.quantile(score, 0.7)
    k = np.log2(P.half_ulp_bf16(w0))
    p = np.clip(0.9 - 0.1 * (k + 18), 0.05, 0.9)  # change probability set by the half-ULP only
    if avoid:
        p = np.where(region, 0.5 * p, p)
    changed = rng.random(n) < p
    return changed, region, w0, p


def test_overlap_rounding_only_vanishes_within_strata():
    changed, region, w0, p = _planted_overlap_case(5, avoid=False)
    out = P.overlap_within_strata(changed, region, w0)
    assert abs(out["z"]) < 4
    assert out["unstratified_z"] < -8 and out["unstratified_excess"] < -0.05
    expected = P.predicted_overlap(p, region)
    assert abs(out["unstratified_excess"] - expected) < 4 * out["unstratified_standard_error"]


def test_overlap_avoiding_region_within_strata_is_negative():
    changed, region, w0, _ = _planted_overlap_case(6, avoid=True)
    out = P.overlap_within_strata(changed, region, w0)
    assert out["z"] < -8 and out["excess"] < -0.03


def test_predicted_overlap_hand_cases():
    assert P.predicted_overlap([1.0, 1.0, 0.0, 0.0], np.array([1, 0, 1, 0], dtype=bool)) == 0.0
    assert P.predicted_overlap([1.0, 0.5, 0.5, 0.0], np.array([1, 1, 0, 0], dtype=bool)) == 0.25
    assert P.predicted_overlap({"a": [1.0, 0.5], "b": [0.5, 0.0]},
                               {"a": np.array([1, 1], dtype=bool), "b": np.array([0, 0], dtype=bool)}) == 0.25
    assert np.isnan(P.predicted_overlap([0.0, 0.0], np.array([1, 0], dtype=bool)))


# ----------------------------------------------------------------------------------------------
# regime_numbers
# ----------------------------------------------------------------------------------------------


def _hand_run():
    lr, T = 2.0**-10, 4
    w0 = {"W": np.array([[1.0, 1.0], [2.0, 2.0]], dtype=np.float32), "b": np.array([0.5, 0.5], dtype=np.float32)}
    cs = {"W": np.array([[2**-8, -(2**-9)], [2**-8, 0.0]]), "b": np.array([-(2**-8), 0.0])}
    acs = {"W": np.full((2, 2), 2**-8), "b": np.array([2**-8, 0.0])}
    w1 = {k: (w0[k] + cs[k]).astype(np.float32) for k in w0}
    seen = {"W": np.ones((2, 2), dtype=bool), "b": np.array([True, False])}
    return w0, w1, cs, acs, seen, lr, T


def test_regime_numbers_hand_case():
    import json
    import math

    w0, w1, cs, acs, seen, lr, T = _hand_run()
    out = P.regime_numbers(w0, w1, cs, acs, seen, lr, T)
    json.dumps(out, allow_nan=False)
    # eligible: W (half-ULPs 2^-8, 2^-8, 2^-7, 2^-7), b[0] (half-ULP 2^-9)
    assert out["step_ratio"] == 0.25  # 0.25, 0.25, 0.125, 0.125, 0.5
    assert out["drift_ratio"] == 0.5  # 1, 0.5, 0.5, 0, 2
    assert out["walk_ratio"] == 0.5 and out["lr_ratio"] == 0.25 and out["step_fraction"] == 1.0
    assert out["sign_consistency"] == 1.0  # 1, 0.5, 1, 0, 1
    assert out["untouched_share"] == pytest.approx(1 / 6)
    # bf16 export: 1 + 2^-8 and 1 - 2^-9 are ties kept at 1.0, 2 + 2^-8 is below half a ULP; only b[0] shows
    assert out["sparsity_bf16_all"] == pytest.approx(5 / 6) and out["sparsity_bf16_eligible"] == pytest.approx(0.8)
    assert out["sparsity_fp32_all"] == pytest.approx(1 / 3) and out["sparsity_fp32_eligible"] == pytest.approx(0.2)
    assert out["predicted_sparsity_from_drift"] == pytest.approx(0.6) and out["drift_prediction_misses"] == 1  # the tie
    assert out["predicted_sparsity_from_drift_all"] == pytest.approx(4 / 6)
    D = lr * T * 1.0
    p = [math.erfc(P.Z_QUARTILE * h / (math.sqrt(2) * D)) for h in (2**-8, 2**-8, 2**-7, 2**-7, 2**-9)]
    assert out["predicted_sparsity_from_regime"] == pytest.approx(1 - sum(p) / 5, rel=1e-12)
    assert out["predicted_sparsity_from_regime_measured_step"] == pytest.approx(out["predicted_sparsity_from_regime"])
    # |change_sum| of eligible weights: 2^-8, 2^-9, 2^-8, 0, 2^-8 against half-ULPs 2^-8 (x2), 2^-7 (x2), 2^-9
    assert out["predicted_sparsity_from_drift_distribution"] == pytest.approx(1 - (3 / 5 * 2 + 0 * 2 + 4 / 5) / 5)
    W = out["per_tensor"]["W"]
    assert W["relative_update_norm"] == pytest.approx(math.sqrt(2 * 2**-16 + 2**-18) / math.sqrt(10))
    assert W["drift_ratio"] == 0.5 and W["sparsity_bf16"] == 1.0 and W["untouched_share"] == 0.0
    b = out["per_tensor"]["b"]
    assert b["relative_update_norm"] is None and b["drift_ratio"] == 2.0 and b["untouched_share"] == 0.5
    assert b["sparsity_bf16"] == 0.5 and b["sparsity_bf16_eligible"] == 0.0


def test_regime_numbers_agrees_with_the_single_functions():
    rng = np.random.default_rng(7)
    shape = (40, 30)
    w0 = bf16_weights(rng, shape[0] * shape[1], scale=0.1).reshape(shape)
    steps, lr = 50, 1e-4
    d = (rng.normal(0.2, 1.0, (steps, *shape)) * lr).astype(np.float32)
    seen = rng.random(shape) < 0.9
    d[:, ~seen] = 0
    cs, acs = d.sum(axis=0), np.abs(d).sum(axis=0)
    w1 = (w0 + cs).astype(np.float32)
    out = P.regime_numbers({"w": w0}, {"w": w1}, {"w": cs}, {"w": acs}, {"w": seen}, lr, steps)
    assert out["step_ratio"] == pytest.approx(P.step_ratio(w0, acs, steps, moved=seen), rel=1e-12)
    assert out["drift_ratio"] == pytest.approx(P.drift_ratio(w0, w1, moved=seen), rel=1e-12)
    assert out["walk_ratio"] == pytest.approx(P.walk_ratio(lr, steps, w0, moved=seen), rel=1e-12)
    assert out["sign_consistency"] == pytest.approx(P.sign_consistency(cs, acs, moved=seen), rel=1e-12)
    split = P.sparsity_split(P.changed_mask_bitwise(w0, w1), seen)
    assert out["sparsity_bf16_eligible"] == split["sparsity_eligible"] and out["untouched_share"] == split["untouched_share"]
    assert out["sparsity_fp32_all"] == P.sparsity(P.changed_mask_fp32(w0, w1))
    assert out["predicted_sparsity_from_drift"] == pytest.approx(P.predict_sparsity_from_drift(w0[seen], cs[seen]))
    assert out["predicted_sparsity_from_regime"] == pytest.approx(
        P.predict_sparsity_from_regime(w0[seen], lr, steps, out["sign_consistency"]), rel=1e-12)
    assert out["per_tensor"]["w"]["relative_update_norm"] == pytest.approx(P.relative_update_norm(w0, w1))


def test_regime_numbers_nothing_eligible_gives_none():
    w0, w1, cs, acs, seen, lr, T = _hand_run()
    none_seen = {k: np.zeros_like(v) for k, v in seen.items()}
    zero = {k: np.zeros_like(v) for k, v in cs.items()}
    out = P.regime_numbers(w0, w0, zero, zero, none_seen, lr, T)
    assert out["step_ratio"] is None and out["sparsity_bf16_eligible"] is None and out["predicted_sparsity_from_regime"] is None
    assert out["untouched_share"] == 1.0 and out["per_tensor"]["W"]["drift_ratio"] is None


# ----------------------------------------------------------------------------------------------
# Bad inputs of the regime functions
# ----------------------------------------------------------------------------------------------

one, two = np.ones(1), np.ones(2)
t2 = np.ones(2, dtype=bool)


def _bad_regime(**change):
    args = dict(zip(("w0", "w1", "change_sum", "abs_change_sum", "grad_seen", "lr", "steps"), _hand_run()))
    args.update(change)
    return lambda: P.regime_numbers(**args)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: P.half_ulp_bf16(nan), "w"),
        (lambda: P.step_ratio(two, -two, 3), "abs_change_sum"),
        (lambda: P.step_ratio(two, one, 3), "abs_change_sum"),
        (lambda: P.step_ratio(two, two, 0), "steps"),
        (lambda: P.step_ratio(two, two, 2.5), "steps"),
        (lambda: P.step_ratio(two, two, True), "steps"),
        (lambda: P.step_ratio(two, two, 3, moved=np.ones(2)), "moved"),
        (lambda: P.step_ratio(two, two, 3, moved=np.ones(3, dtype=bool)), "moved"),
        (lambda: P.drift_ratio(two, nan), "w1"),
        (lambda: P.walk_ratio(0.0, 3, two), "lr"),
        (lambda: P.walk_ratio(np.inf, 3, two), "lr"),
        (lambda: P.walk_ratio("a", 3, two), "lr"),
        (lambda: P.sign_consistency(nan, two), "change_sum"),
        (lambda: P.sign_consistency(two, -two), "abs_change_sum"),
        (lambda: P.relative_update_norm(np.ones((2, 2)), np.ones((2, 3))), "W1"),
        (lambda: P.changed_mask_fp32(two, np.ones(3, np.float32)), "w1"),
        (lambda: P.changed_mask_fp32(np.array([1, 2]), two), "w0"),
        (lambda: P.sparsity_split(np.ones(2), t2), "changed"),
        (lambda: P.sparsity_split(t2, np.ones(3, dtype=bool)), "eligible"),
        (lambda: P.sparsity_split({"a": t2}, {"b": t2}), "a"),
        (lambda: P.predict_changed_from_drift(two, np.ones(3)), "drift"),
        (lambda: P.change_probability_from_regime(two, 1e-4, 10, 1.5), "sign_consistency"),
        (lambda: P.change_probability_from_regime(two, 1e-4, 10, 0.5, step_fraction=0.0), "step_fraction"),
        (lambda: P.predict_sparsity_from_regime(two, -1e-4, 10, 0.5), "lr"),
        (lambda: P.drift_for_sparsity(two, 1.0), "target_sparsity"),
        (lambda: P.fit_quality(two, np.ones(3)), "measured"),
        (lambda: P.fit_quality(np.array([1.0, np.nan]), two), "predicted"),
        (lambda: P.overlap_within_strata(t2, np.ones(3, dtype=bool), two), "region"),
        (lambda: P.overlap_within_strata(t2, t2, np.ones(3)), "w0"),
        (lambda: P.predicted_overlap(np.array([0.5, 1.5]), t2), "p_change"),
        (_bad_regime(lr=0.0), "lr"),
        (_bad_regime(w0={"W": np.full((2, 2), 1.001, np.float32), "b": np.ones(2, np.float32)}), "w0['W']"),
        (_bad_regime(w1={"W": np.ones((2, 2), np.float32)}), "b"),
        (_bad_regime(grad_seen={"W": np.ones((2, 2)), "b": t2}), "grad_seen['W']"),
        (_bad_regime(abs_change_sum={"W": np.zeros((2, 2)), "b": np.zeros(2)}), "change_sum['W']"),
    ],
)
def test_regime_bad_inputs_raise_naming_argument(call, name):
    with pytest.raises(ValueError, match=f"`{__import__('re').escape(name)}`"):
        call()
