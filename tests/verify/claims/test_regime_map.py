"""The regime map's sweep rules (verify/claims/regime_map.py: regime.phase, regime.width, regime.optimizer) on
hand-made and planted numbers, every outcome of each rule reached."""

import math

import numpy as np
import pytest
from scipy import stats

from verify.claims import regime_map as M
from verify.controls.numbers import planted_differences, rising_sparsity, synthetic_phase
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from verify.rules import AT_THE_EDGE, UNDERPOWERED, Interval

SPARSITY = M.PHASE_RULES["sparsity"]

# ----------------------------------------------------------------------------------------------
# regime.phase


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phase_rule_reaches_every_outcome(seed):
    present, absent, bins = M.decide_phase_metric(*synthetic_phase(seed, 0.2), SPARSITY)
    assert (present.status, absent.status) == (REPRODUCED, NOT_REPRODUCED) and len(bins) >= 3
    present, absent, _ = M.decide_phase_metric(*synthetic_phase(seed, 0.0), SPARSITY)  # one curve
    assert (present.status, absent.status) == (NOT_REPRODUCED, REPRODUCED)
    present, absent, _ = M.decide_phase_metric(*synthetic_phase(seed, -0.2), SPARSITY)  # the opposite method effect
    assert (present.status, absent.status) == (NOT_REPRODUCED, NOT_REPRODUCED)
    x1, y1, x2, y2 = synthetic_phase(seed, 0.2)
    present, absent, bins = M.decide_phase_metric(x1 * 1e6, y1, x2, y2, SPARSITY)  # no drift bin holds both methods
    assert bins == [] and present.status == absent.status == INCONCLUSIVE


def test_phase_pools_bins_of_opposite_sign_with_random_effects():
    # two drift bins, each precise on its own, of opposite sign (+0.028, -0.003; regime.phase on quick at an earlier
    # commit): a fixed-effect interval was +0.012 [+0.008, +0.017]; the pooled one contains 0 without equivalence
    x = [1.0, 1.1, 100.0, 110.0]
    rl, sft = [0.500, 0.502, 0.300, 0.302], [0.472, 0.474, 0.303, 0.305]
    present, absent, bins = M.decide_phase_metric(x, rl, x, sft, SPARSITY)
    assert [round(b.diff, 3) for b in bins] == [0.028, -0.003]
    lo, hi = present.interval.bounds()
    assert lo < 0 < hi and hi - lo > 0.2 and present.interval.df == 1
    assert present.status == absent.status == INCONCLUSIVE and UNDERPOWERED in present.qualifiers


def test_phase_single_bin_uses_its_welch_t_interval():
    x = [1.0, 1.1, 1.2]
    rl, sft = [0.50, 0.56, 0.53], [0.40, 0.41, 0.39]
    present, absent, bins = M.decide_phase_metric(x, rl, x, sft, SPARSITY)
    (b,) = bins
    welch = stats.ttest_ind(rl, sft, equal_var=False)
    assert b.diff == pytest.approx(0.13) and b.df == pytest.approx(welch.df)
    lo, hi = present.interval.bounds()
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.975, welch.df) * math.sqrt(b.variance))
    assert present.status == REPRODUCED and absent.status == NOT_REPRODUCED


def test_phase_interval_straddling_the_floor_is_at_the_edge():
    x = [1.0, 1.1, 1.2, 100.0, 110.0, 120.0]
    rl = [0.50, 0.52, 0.48, 0.30, 0.32, 0.28]
    sft = [0.45, 0.47, 0.43, 0.25, 0.27, 0.23]  # +0.05 in both bins, noisy
    present, _, _ = M.decide_phase_metric(x, rl, x, sft, SPARSITY)
    assert present.status == INCONCLUSIVE and AT_THE_EDGE in present.qualifiers


def test_phase_directions_and_log2_ratios():
    # principal overlap: the paper expects RL below SFT
    principal = M.PHASE_RULES["principal_overlap"]
    assert principal.presence.direction == -1 and principal.presence.floor == -0.01
    assert M.decide_phase_metric(*synthetic_phase(0, -0.2), principal)[0].status == REPRODUCED
    assert M.decide_phase_metric(*synthetic_phase(0, 0.2), principal)[0].status == NOT_REPRODUCED
    # NSS as log2(RL / SFT): RL a quarter of SFT at every drift -> -2, beyond the floor of -1 (a factor 2)
    nss = M.PHASE_RULES["nss"]
    rng = np.random.default_rng(0)
    x = 10 ** rng.uniform(-1, 2, 40)
    sft = 0.1 * x * np.exp(rng.normal(0, 0.05, 40))
    rl = sft / 4 * np.exp(rng.normal(0, 0.05, 40))
    present, absent, _ = M.decide_phase_metric(x, rl, x, sft, nss)
    assert present.status == REPRODUCED and present.interval.mean == pytest.approx(-2, abs=0.1)
    present, absent, _ = M.decide_phase_metric(x, sft * np.exp(rng.normal(0, 0.05, 40)), x, sft, nss)
    assert (present.status, absent.status) == (NOT_REPRODUCED, REPRODUCED)
    # non-positive values have no log and are left out, not turned into -inf
    with_zero = np.where(np.arange(40) == 0, 0.0, rl)
    assert M.decide_phase_metric(x, with_zero, x, sft, nss)[0].status == REPRODUCED


def test_phase_controls_flip():
    assert M.decide_phase_metric(*synthetic_phase(0, 0.2), SPARSITY)[0].status == REPRODUCED
    assert M.decide_phase_metric(*synthetic_phase(1, 0.0), SPARSITY)[0].status != REPRODUCED


# ----------------------------------------------------------------------------------------------
# regime.width


def test_width_rule_reaches_every_outcome():
    assert M.decide_width(*rising_sparsity(True)).status == REPRODUCED
    assert M.decide_width(*rising_sparsity(False)).status == NOT_REPRODUCED  # flat: whole interval below +0.02
    w = [32, 64, 128, 256] * 2
    assert M.decide_width(w, [0.35, 0.3, 0.25, 0.2, 0.34, 0.31, 0.24, 0.21]).status == NOT_REPRODUCED  # falling
    noisy = M.decide_width(w, [0.2, 0.25, 0.2, 0.25, 0.25, 0.2, 0.25, 0.2])
    assert noisy.status == INCONCLUSIVE and noisy.interval.bounds()[0] < 0 < noisy.interval.bounds()[1]
    assert M.decide_width([32, 64], [0.2, 0.3]).status == INCONCLUSIVE  # too few runs for an interval
    edge = M.decide_width(w, [0.20, 0.22, 0.24, 0.26, 0.22, 0.21, 0.26, 0.25])  # slope about 0.02
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers


def test_width_slope_is_the_ols_slope_with_runs_as_units():
    out = M.decide_width([16, 32, 64, 128], [0.1, 0.2, 0.3, 0.41])
    assert out.interval.mean == pytest.approx(0.103) and out.interval.df == 2 and out.interval.n == 4


def test_band_width_extrapolates_the_fitted_trend():
    assert M.band_width([32, 64], [0.20, 0.24], level=0.36) == pytest.approx(32 * 2 ** 4)
    assert math.isnan(M.band_width([32, 64], [0.24, 0.20]))


# ----------------------------------------------------------------------------------------------
# regime.optimizer


def _arm(values, name="adamw"):
    return M.OPT_RULES[name].decide(Interval.of(values))


def test_optimizer_rule_reaches_every_outcome():
    rep, no, wide = _arm([0.20, 0.21, 0.19]), _arm([0.00, 0.01, -0.01]), _arm([-0.2, 0.3, 0.1])
    assert (rep.status, no.status, wide.status) == (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    assert M.decide_optimizer(rep, rep) == REPRODUCED  # not an Adam artifact
    assert M.decide_optimizer(rep, no) == NOT_REPRODUCED  # an Adam artifact
    assert M.decide_optimizer(rep, wide) == INCONCLUSIVE
    assert M.decide_optimizer(no, rep) == INCONCLUSIVE  # no difference under AdamW: nothing to survive
    assert M.decide_optimizer(no, no) == INCONCLUSIVE


def test_optimizer_controls():
    planted = _arm(planted_differences(0.2))
    assert M.decide_optimizer(planted, _arm(planted_differences(0.15, seed=1), "sgd")) == REPRODUCED
    # the null: RL of seeds 2..4 in SFT's role against RL of seeds 1..3 (same method: no difference by construction)
    rl = [0.52, 0.55, 0.50, 0.53]
    null = M.OPT_NULL["sgd"].decide(Interval.of(np.asarray(rl[:3]) - np.asarray(rl[1:])))
    assert null.status != REPRODUCED and M.decide_optimizer(planted, null) != REPRODUCED
