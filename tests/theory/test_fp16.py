"""fp16 rounding, ULP and the fp16 changed mask (theory/precision.py), bit for bit against numpy's float16 cast.

numpy converts float64 and float32 to float16 directly (one correctly rounded step, ties to even), so its
cast is the oracle; ``to_fp16`` reaches float16 from float64 through a round-to-odd float32 step.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import precision as P

BITS16 = np.arange(0x7C00, dtype=np.uint16)  # every finite non-negative fp16 bit pattern


def _oracle(x) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x).astype(np.float16)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np.asarray(a, np.float16).view(np.uint16), np.asarray(b, np.float16).view(np.uint16))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=50))
def test_float64_rounds_like_numpy_float16_cast(xs):
    x = np.array(xs, np.float64)
    assert _same_bits(P.to_fp16(x), _oracle(x))


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=50))
def test_float32_rounds_like_numpy_float16_cast(xs):
    x = np.array(xs, np.float32)
    assert _same_bits(P.to_fp16(x), _oracle(x))


def test_every_tie_and_neighbour_of_every_fp16_value():
    v = BITS16.view(np.float16).astype(np.float64)
    nxt = np.append(v[1:], 65536.0)  # the overflow threshold sits halfway to 2^16
    mid = (v + nxt) / 2  # exact ties: round half to even
    for x in (mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf), -mid, v, -v):
        assert _same_bits(P.to_fp16(x), _oracle(x))
        assert _same_bits(P.to_fp16(x.astype(np.float32)), _oracle(x.astype(np.float32)))
    ties = P.to_fp16(mid[:-1]).view(np.uint16)
    assert np.all(ties % 2 == 0)  # ties go to the even neighbour


def test_special_cases_subnormals_overflow_signed_zeros():
    x = np.array([0.0, -0.0, 2.0**-24, 2.0**-25, 2.0**-25 + 2.0**-60, 3 * 2.0**-26, 2.0**-14 - 2.0**-24, 2.0**-14,
                  65504.0, 65519.99, 65520.0, 1e6, -1e6, 1 + 2.0**-11 + 2.0**-40])
    got = P.to_fp16(x)
    assert _same_bits(got, _oracle(x))
    assert got.view(np.uint16)[1] == 0x8000  # -0 keeps its sign
    assert got[3] == 0 and got[4] == 2.0**-24  # a tie at half the smallest subnormal goes to 0; just above, up
    assert got[9] == 65504 and np.isinf(got[10]) and np.isinf(got[11]) and got[12] == -np.inf
    assert got[13] == 1 + 2.0**-10  # one rounding (float64 -> float32 -> float16 would give 1)
    assert _oracle(x.astype(np.float32))[13] == 1.0
    bf = np.array([1.5, -3.25, 2.0**-20], ml_dtypes.bfloat16)  # bf16 inputs are upcast exactly
    assert _same_bits(P.to_fp16(bf), _oracle(bf.astype(np.float32)))
    with pytest.raises(ValueError, match="`x`"):
        P.to_fp16(np.array([1, 2]))


def test_ulp_and_half_ulp_match_the_spacing_of_fp16():
    v = BITS16.view(np.float16).astype(np.float64)
    spacing = np.diff(np.append(v, 65536.0))  # distance to the next value up
    np.testing.assert_array_equal(P.ulp_fp16(v), spacing)
    np.testing.assert_array_equal(P.ulp_fp16(-v), spacing)
    np.testing.assert_array_equal(P.half_ulp_fp16(v), spacing / 2)
    assert P.ulp_fp16(np.array([1.0]))[0] == 2.0**-10 and P.ulp_fp16(np.array([0.0]))[0] == 2.0**-24
    assert P.half_ulp_fp16(np.array([1.9999]))[0] == 2.0**-10  # stored as 2.0, so the binade above
    with pytest.raises(ValueError, match="overflow"):
        P.ulp_fp16(np.array([70000.0]))


@given(st.floats(-60000, 60000, width=32), st.floats(-1, 1, width=32))
def test_changed_mask_fp16_is_bit_inequality_of_the_casts(w, d):
    w0 = np.array([w], np.float32)
    w1 = w0 + np.float32(d) * np.float32(abs(w) + 1e-3) * np.float32(1e-3)
    a, b = _oracle(w0), _oracle(w1)
    expected = a.view(np.uint16) != b.view(np.uint16)
    expected &= ~((a == 0) & (b == 0))
    np.testing.assert_array_equal(P.changed_mask_fp16(w0, w1), expected)


def test_changed_mask_fp16_signed_zero_overflow_and_bad_input():
    w0 = np.array([0.0, 1.0, 1e5, 1e5, 1.0])
    w1 = np.array([-0.0, 1 + 2.0**-12, 2e5, 60000.0, 1 + 2.0**-10])
    assert P.changed_mask_fp16(w0, w1).tolist() == [False, False, False, True, True]
    with pytest.raises(ValueError, match="`w1`"):
        P.changed_mask_fp16(np.ones(2), np.array([1.0, math.nan]))
    with pytest.raises(ValueError, match="same shape"):
        P.changed_mask_fp16(np.ones(2), np.ones(3))
