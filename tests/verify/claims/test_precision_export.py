"""precision.fp16_export's rule (verify/claims/precision_export.py) on hand-made and planted numbers, every outcome
reached, and its planted positive control against the issue's simulation (about 0.75 against 0.19)."""

import numpy as np
import pytest

from verify.claims import precision_export as PE
from verify.controls.exports import planted_export_sparsity
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_export_rule_reaches_every_outcome():
    assert PE.decide_export([(0.80, 0.30), (0.78, 0.31), (0.82, 0.29)]).status == REPRODUCED
    # fp16 denser, but by less than the floor of 0.1 (an interval above 0 that reproduces nothing)
    out = PE.decide_export([(0.20, 0.15), (0.21, 0.16), (0.19, 0.15)])
    assert out.status == NOT_REPRODUCED and out.interval.bounds()[0] > 0
    # an interval containing both 0 and the floor
    assert PE.decide_export([(0.5, 0.6), (0.5, 0.3), (0.5, 0.45)]).status == INCONCLUSIVE


def test_planted_published_drift_matches_the_simulation_and_reproduces():
    pairs = [planted_export_sparsity(s) for s in range(3)]
    bf, fp = np.mean([b for b, _ in pairs]), np.mean([f for _, f in pairs])
    assert bf == pytest.approx(0.75, abs=0.04) and fp == pytest.approx(0.19, abs=0.03)
    assert PE.decide_export(pairs).status == REPRODUCED


def test_a_drift_far_above_both_half_ulps_is_dense_in_both_exports():
    pairs = [planted_export_sparsity(s, drift=80.0) for s in range(3)]  # SFT-like drift: the negative control's regime
    assert max(b for b, _ in pairs) < 0.02
    assert PE.decide_export(pairs).status == NOT_REPRODUCED
