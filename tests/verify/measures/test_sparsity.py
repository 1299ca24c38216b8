"""Sparsity measures (verify/measures/sparsity.py): the fp32-storage control compares float32 bits (never a bf16
rounding), the half-ULP readout agrees with exact rounding, and the drift predictor reads a run's own drifts."""

import ml_dtypes
import numpy as np
import pytest

from theory.precision import to_bf16
from verify.measures.sparsity import bf16_sparsity, fp32_sparsity, measured_and_predicted, predicted_with, visibility_agreement


class _FakeRun:
    """A run whose fp32_master snapshots are given arrays (base and final)."""

    def __init__(self, w0, w1, regime=None):
        self.flat = {"base": {"w": w0}, "final": {"w": w1}}
        self.regime = regime or {}

    def snapshot(self, step="final", master=False):
        w = self.flat[step]["w"]
        return {"w": w if master else np.asarray(to_bf16(w)).astype(ml_dtypes.bfloat16)}


def _run(scale, seed=0):
    rng = np.random.default_rng(seed)
    w0 = np.asarray(to_bf16(rng.normal(0, 0.1, 5000)), np.float32)
    return _FakeRun(w0, (w0 + scale * rng.standard_normal(w0.shape)).astype(np.float32),
                    {"predicted_sparsity_from_regime": 0.5})


def test_fp32_storage_control_compares_float32_bits():
    """The bug of issue 8: the fp32 control rounded both sides to bf16 and so read the bf16 export again."""
    run = _run(1e-6)  # sub-half-ULP: invisible in bf16
    assert bf16_sparsity(run) > 0.99
    assert fp32_sparsity(run) < 0.01


def test_half_ulp_readout_and_drift_predictor():
    small, large = _run(1e-5), _run(1e-2, seed=1)
    assert visibility_agreement([small])[0] > 0.99 and visibility_agreement([large])[0] > 0.99
    measured, predicted, regime = measured_and_predicted(small)
    assert predicted == pytest.approx(measured, abs=0.01) and regime == 0.5
    # with another run's drifts the prediction moves far from the measured sparsity
    assert abs(predicted_with(small, large) - measured) > 0.5
