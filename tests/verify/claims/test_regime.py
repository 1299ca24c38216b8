"""Regime map: the decision rules of the regime claims on planted inputs (both ways), the learning-rate rules,
and the fixed fp32-storage control of gate3.lr_sweep (float32 bits, never a bf16 rounding)."""

import math

import ml_dtypes
import numpy as np
import pytest

from theory.precision import to_bf16
from verify.claims import gate3 as G3
from verify.claims import regime as R
from verify.profiles import get_profile
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Estimate


def test_predictor_rule_flips_on_planted_drifts():
    assert R.decide_predictor(*R._planted_predictor(0))[0] == REPRODUCED
    pred, meas = R._planted_predictor(1)
    assert R.decide_predictor(pred[::-1], meas)[0] == NOT_REPRODUCED


def test_binned_difference_hand_computed():
    x = [1.0, 1.1, 100.0, 110.0]
    b = R.binned_difference(x, [0.5, 0.7, 0.1, 0.1], x, [0.2, 0.2, 0.0, 0.2])
    assert [(lo, n1, n2) for lo, n1, n2, _ in b["bins"]] == [(0.0, 2, 2), (2.0, 2, 2)]
    assert b["diff"] == pytest.approx(((0.6 - 0.2) + (0.1 - 0.1)) / 2)
    assert R.binned_difference([1.0], [0.1], [100.0], [0.2])["bins"] == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phase_rule_flips(seed):
    assert R.decide_phase_metric(*R._synthetic_phase(seed, 0.2), +1)[:2] == (REPRODUCED, "method effect at matched regime")
    assert R.decide_phase_metric(*R._synthetic_phase(seed, -0.2), +1)[0] == NOT_REPRODUCED
    assert R.decide_phase_metric(*R._synthetic_phase(seed, 0.0), +1)[:2] == (NOT_REPRODUCED, "explained by regime")
    x1, y1, x2, y2 = R._synthetic_phase(seed, 0.2)
    assert R.decide_phase_metric(x1 * 1e6, y1, x2, y2, +1)[:2] == (INCONCLUSIVE, "no overlap")


def test_width_rule_and_band_extrapolation():
    w = [32, 64, 128, 256] * 2
    rising = [0.20, 0.24, 0.28, 0.32, 0.21, 0.25, 0.27, 0.33]
    assert R.decide_width(w, rising)[0] == REPRODUCED
    assert R.decide_width(w, rising[::-1])[0] == NOT_REPRODUCED
    assert R.decide_width(w, [0.2] * 8)[0] == INCONCLUSIVE
    assert R.band_width([32, 64], [0.20, 0.24], level=0.36) == pytest.approx(32 * 2 ** 4)
    assert math.isnan(R.band_width([32, 64], [0.24, 0.20]))


def test_width_family_and_lr():
    p = get_profile("quick")
    assert R.width_base(p, 32) == p.base
    b = R.width_base(p, 128)
    assert (b.model.d_model, b.model.d_ff, b.model.n_heads, b.model.n_layers) == (128, 256, 8, p.base.model.n_layers)
    assert R.width_lr(p, 128) == pytest.approx(p.rl_lr / 2)


def test_optimizer_rule_flips():
    e = lambda v: Estimate(v, v - 0.02, v + 0.02, [v] * 3)  # noqa: E731
    assert R.decide_optimizer(e(0.2), e(0.1)) == REPRODUCED
    assert R.decide_optimizer(e(0.2), e(0.0)) == NOT_REPRODUCED
    assert R.decide_optimizer(e(0.0), e(0.2)) == INCONCLUSIVE
    p = get_profile("quick")
    assert R.sgd_lr(p, "rl", 10.0) == pytest.approx(10 * R.sgd_lr(p, "rl", 1.0), rel=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_magnitude_rule_flips(seed):
    assert R.decide_magnitude([R._planted_strata(seed + s, True) for s in range(4)])[0] == REPRODUCED
    assert R.decide_magnitude([R._planted_strata(seed + s, False) for s in range(4)])[0] == NOT_REPRODUCED


class _FakeRun:
    """A run whose fp32_master snapshots are given arrays (base and final)."""

    def __init__(self, w0, w1):
        self.flat = {"base": {"w": w0}, "final": {"w": w1}}

    def snapshot(self, step="final", master=False):
        w = self.flat[step]["w"]
        return {"w": w if master else np.asarray(to_bf16(w)).astype(ml_dtypes.bfloat16)}


def test_fp32_storage_control_compares_float32_bits():
    """The bug of issue 8: the fp32 control rounded both sides to bf16 and so read the bf16 export again."""
    rng = np.random.default_rng(0)
    w0 = np.asarray(to_bf16(rng.normal(0, 0.1, 5000)), np.float32)
    w1 = (w0 + 1e-6 * rng.standard_normal(w0.shape)).astype(np.float32)  # sub-half-ULP: invisible in bf16
    run = _FakeRun(w0, w1)
    assert G3.bf16_sparsity(run) > 0.99
    assert G3.fp32_sparsity(run) < 0.01
    # so the lr sweep's fp32 control cannot reproduce the bf16 curve: a flat fp32 curve fails the rule
    assert G3.decide_sweep([1e-5, 1e-2], [[0.97, 0.96], [0.05, 0.06]])[0] == REPRODUCED
    assert G3.decide_sweep([1e-5, 1e-2], [[0.09, 0.09], [0.09, 0.09]])[0] == NOT_REPRODUCED
