"""The fp16_master storage mode (toy_models/storage.py): fp32 training released as an fp16 export, bit for bit
numpy's float16 cast (ties to even, subnormals, overflow, signed zeros); the export is read by value, never
through a bf16 probe; and the learning-rate rule of ``train.lr_rule=step_ratio``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import precision as P
from toy_models.evaluate import pass_at_k_estimate
from toy_models.optim import ADAM_NOISE_STEP, lr_for_step_ratio, median_abs_weight
from toy_models.storage import MODES, after_update, export_fp16, stored_flat, stored_view

FINITE16 = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)  # every finite fp16 >= +0


def _export(x) -> np.ndarray:
    """The released fp16 tensor of master weights ``x`` (float32) under fp16_master."""
    return stored_view({"w": np.asarray(x, np.float32)}, "fp16_master")["w"]


def _numpy(x) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16)


def _same_bits(a, b) -> bool:
    return a.dtype == np.float16 and np.array_equal(a.view(np.uint16), np.asarray(b, np.float16).view(np.uint16))


def test_mode_is_known_and_trains_like_fp32_master():
    assert "fp16_master" in MODES
    x = {"w": np.array([1.0 + 2.0**-20, -3.3, 1e-9], np.float32)}
    assert after_update(x, "fp16_master") is x  # no rounding while training: the fp32_master arithmetic
    held = stored_flat(x, "fp16_master")["w"]
    assert held.dtype == np.float32 and np.array_equal(held.view(np.uint32), x["w"].view(np.uint32))


def test_export_of_every_tie_and_neighbour_of_every_fp16_value():
    nxt = np.append(FINITE16[1:], 65536.0)
    mid = (FINITE16 + nxt) / 2  # the exact tie between neighbours (12 significant bits: exact in float32)
    for x in (mid, np.nextafter(mid.astype(np.float32), np.float32(0)), np.nextafter(mid.astype(np.float32), np.float32(np.inf)),
              -mid, FINITE16, -FINITE16):
        x32 = np.asarray(x, np.float32)
        assert np.array_equal(x32.astype(np.float64)[np.isfinite(x32)], np.asarray(x, np.float64)[np.isfinite(x32)])
        assert _same_bits(_export(x32), _numpy(x32))
    ties = _export(mid[:-1]).view(np.uint16)
    assert np.all(ties % 2 == 0)  # every tie went to its even neighbour


def test_export_subnormals_overflow_and_signed_zeros():
    x = np.array([0.0, -0.0, 2.0**-24, 2.0**-25, 3 * 2.0**-25, 2.0**-14 - 2.0**-24, 2.0**-14, 2.0**-26,
                  65504.0, 65519.99, 65520.0, -65520.0, 1e6, 1e-30], np.float32)
    got = _export(x)
    assert _same_bits(got, _numpy(x))
    assert got.view(np.uint16)[1] == 0x8000  # -0 keeps its sign
    assert got[3] == 0 and got[4] == 2.0**-23  # ties at 0.5 and 1.5 subnormal ulps go to the even 0 and 2 ulps
    assert got[7] == 0 and got[5] == 2.0**-14 - 2.0**-24  # below half the smallest subnormal: 0; subnormals exact
    assert got[9] == 65504.0 and np.isposinf(got[10]) and np.isneginf(got[11]) and np.isposinf(got[12])


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=64))
def test_export_equals_numpys_cast_on_any_float32(xs):
    x = np.array(xs, np.float32)
    assert _same_bits(export_fp16({"w": x})["w"], _numpy(x))


def test_fp16_export_sparsity_compares_values_not_the_bf16_probe():
    w0 = np.array([1.0, 0.5, 3.0, 1e-3, 0.0, 2.0], np.float32)
    w1 = w0 + np.array([2.0**-10, 0.0, 2.0**-9, 0.0, -0.0, 2.0**-12], np.float32)  # one fp16 ULP at 1, 3: changed
    e0, e1 = export_fp16({"w": w0}), export_fp16({"w": w1})
    truth = P.changed_mask_fp16(w0, w1)
    assert truth.tolist() == [True, False, True, False, False, False]
    # 2^-10 / 1 < 1e-3: the paper's relative probe would call the first weight unchanged on fp16 values
    assert abs(float(e1["w"][0]) - float(e0["w"][0])) <= 1e-3 * float(e1["w"][0])
    for probe in ("relative", "bitwise"):
        got = P.checkpoint_sparsity(e0, e1, probe=probe)
        assert got["changed"]["w"] == 2 and got["overall"] == pytest.approx(4 / 6)
    bf = P.checkpoint_sparsity({"w": w0}, {"w": w1}, probe="relative")  # the bf16 export sees none of them
    assert bf["changed"]["w"] == 0


@pytest.mark.parametrize("fn", [P.changed_mask_relative, P.changed_mask_bitwise])
def test_bf16_probes_refuse_fp16_values(fn):
    a = np.array([1.0, 2.0], np.float16)
    with pytest.raises(ValueError, match="fp16 values"):
        fn(a, a)


def test_lr_for_step_ratio_hand_computed():
    # median |w| 0.17 lies in [0.125, 0.25): ULP 2^-10, half-ULP 2^-11; 0.02 * 2^-11 / 0.2294 = 4.257e-5 -> 4.3e-5
    assert lr_for_step_ratio(0.17, 0.02) == pytest.approx(4.3e-5)
    assert lr_for_step_ratio(0.1235, 0.03) == pytest.approx(float(f"{0.03 * 2.0**-12 / ADAM_NOISE_STEP:.2g}"))
    flat = {"blocks.0.attn.q.kernel": np.array([[0.1, -0.3], [0.2, 0.5]], np.float32), "blocks.0.ln1.scale": np.ones(7)}
    assert median_abs_weight(flat) == pytest.approx(0.25)  # norm scales are not weight matrices


def test_pass_at_k_estimate_hand_computed():
    assert pass_at_k_estimate(16, 0, 8) == 0.0 and pass_at_k_estimate(16, 9, 8) == 1.0  # 9 right: any 8 hold one
    assert pass_at_k_estimate(16, 4, 1) == pytest.approx(4 / 16)
    assert pass_at_k_estimate(16, 1, 8) == pytest.approx(0.5)  # one right sample is in half of the 8-subsets
    assert pass_at_k_estimate(4, 2, 2) == pytest.approx(1 - 1 / 6)
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k_estimate(4, 2, 8)
