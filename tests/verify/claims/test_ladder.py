"""regime.ladder's rule (verify/claims/ladder.py) and fit (verify/measures/ladder.py) on hand-made and planted
numbers: every outcome reached, the fit recovers a planted slope, the controls come out as they must."""

import math

import numpy as np
import pytest

from verify.claims import ladder as L
from verify.controls.ladder import permuted_sizes, planted_ladder
from verify.measures.ladder import PUBLISHED_SIZES, first_crossing, fit_ladder
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from verify.rules import Interval

SIZES = [1.2e4] * 3 + [4e4] * 3 + [1.5e5] * 3 + [5.5e5] * 3  # four rungs of three bases
HEAD = [0.40, 0.42, 0.41, 0.38, 0.40, 0.39, 0.41, 0.40, 0.42, 0.40, 0.39, 0.41]


def test_fit_recovers_a_planted_slope_and_headroom_term():
    rng = np.random.default_rng(3)
    head = rng.uniform(0.2, 0.6, len(SIZES))
    drift = 2.0 ** (1.0 - 0.2 * np.log2(SIZES) + 1.5 * head + rng.normal(0, 0.02, len(SIZES)))
    f = fit_ladder(SIZES, head, drift)
    assert f.slope.mean == pytest.approx(-0.2, abs=0.03) and f.headroom.mean == pytest.approx(1.5, abs=0.2)
    assert f.predict(1e6, headroom=0.4).mean == pytest.approx(1.0 - 0.2 * math.log2(1e6) + 0.6, abs=0.1)
    level = 2.0 ** f.predict(3e5).mean
    assert f.size_reaching(level) == pytest.approx(3e5, rel=1e-6)
    # one headroom for every base: the term is left out; too few bases: no fit
    assert fit_ladder(SIZES, [0.4] * len(SIZES), drift).headroom is None
    assert fit_ladder(SIZES[:2], HEAD[:2], drift[:2]) is None


def test_ladder_rule_reaches_every_outcome():
    assert L.decide_ladder(SIZES, HEAD, planted_ladder(SIZES))[0] == REPRODUCED
    # drift flat at 4 half-ULPs: the slope interval lies wholly above -0.1, the fit at 1.5B wholly above 0.5
    flat = [4.0 * (1 + 0.03 * math.sin(i)) for i in range(len(SIZES))]
    status, out = L.decide_ladder(SIZES, HEAD, flat)
    assert status == NOT_REPRODUCED and out["slope"].status == NOT_REPRODUCED
    # falling fast enough per doubling but from so high that 1.5B stays far above 0.5: the extrapolation decides
    steep = planted_ladder(SIZES, slope=-0.2, at_published=8.0, noise=0.02)
    status, out = L.decide_ladder(SIZES, HEAD, steep)
    assert status == NOT_REPRODUCED and out["slope"].status == REPRODUCED and out["at 1.5B"].status == NOT_REPRODUCED
    # noisy bases: the slope interval straddles -0.1
    noisy = planted_ladder(SIZES, slope=-0.1, at_published=0.5, noise=1.0, seed=4)
    assert L.decide_ladder(SIZES, HEAD, noisy)[0] == INCONCLUSIVE
    assert L.decide_ladder([], [], [])[0] == INCONCLUSIVE  # no base reached the gain


def test_permuted_sizes_remove_a_planted_size_effect():
    drift = planted_ladder(SIZES)
    shuffled = permuted_sizes(SIZES)
    assert sorted(shuffled) == sorted(SIZES) and shuffled != SIZES
    assert L.decide_ladder(shuffled, HEAD, drift)[0] != REPRODUCED


def test_rung_table_and_the_cheapest_rung_at_or_below_half_an_ulp():
    rec = lambda n, d, ok=True: {"params": n, "pass1": 0.4, "pass8": 0.9, "lr": 1e-5, "step_ratio": 0.02, "drift_ratio": d,  # noqa: E731
                                 "relative_update_norm": 1e-3, "visible_share": 0.01, "sign_consistency": 0.8,
                                 "steps": 100.0, "gain": 0.1, "sparsity": 0.7, "reached": ok, "drift_at_half_gain": d / 2}
    rungs = {"small": [rec(1e4, 0.45), rec(1e4, 0.40), rec(1e4, 0.42)],
             "big": [rec(1e5, 0.30), rec(1e5, 0.31), rec(1e5, 0.29)],
             "wide spread": [rec(5e3, 0.1), rec(5e3, 0.9), rec(5e3, 0.4)],
             "one missed": [rec(2e3, 0.2), rec(2e3, 0.2), rec(2e3, 5.0, ok=False)]}
    table = L.rung_table(rungs)
    assert table["one missed"]["reached"] == 2 and table["one missed"]["drift_ratio"].mean == pytest.approx(0.2)
    assert table["one missed"]["params"].n == 3  # sizes and pass@k over every base, costs over those at the gain
    assert L.cheapest_reaching(table) == "small"  # 'wide spread' straddles 0.5, 'one missed' lost a base
    assert L.cheapest_reaching({"big": table["big"] | {"drift_ratio": Interval.of([0.6, 0.7, 0.65])}}) is None
    assert L.published_rung(table) == "small"
    # none at or below 0.5: the cheapest rung whose mean lies inside the lowest rung's interval
    high = {"a": table["small"] | {"drift_ratio": Interval.of([2.0, 2.2, 2.1])},
            "b": table["big"] | {"drift_ratio": Interval.of([1.9, 2.3, 1.7])},
            "c": table["big"] | {"params": Interval.of([2e4] * 3), "drift_ratio": Interval.of([3.0, 3.1, 2.9])}}
    assert L.cheapest_reaching(high) is None and L.published_rung(high) == "a"
    high["a"] = high["a"] | {"drift_ratio": Interval.of([3.0, 3.1, 3.05])}  # now above b's upper bound 2.72
    assert L.published_rung(high) == "b"


def test_first_crossing_reads_the_drift_of_the_first_evaluation_past_the_gain():
    recs = [{"step": 10, "heldout/gain": 0.02, "regime/drift_ratio": 0.5}, {"step": 11},
            {"step": 20, "heldout/gain": 0.06, "regime/drift_ratio": 1.1}, {"step": 30, "heldout/gain": 0.04,
                                                                              "regime/drift_ratio": 1.6}]
    assert first_crossing(recs, 0.05) == 1.1 and math.isnan(first_crossing(recs, 0.5))
    assert PUBLISHED_SIZES["1.5B"] == 1.5e9
