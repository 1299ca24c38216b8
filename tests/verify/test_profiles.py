"""Profiles and their typed knobs (verify/profiles.py, verify/knobs.py): the learning-rate rules, the rounding of
every derived rate, and the rules that derive a knob a profile does not give, checked against the tables of the
profiles that give them."""

import dataclasses
import math

import pytest

from theory.precision import half_ulp_bf16
from toy_models.config import ConfigError
from verify.knobs import AdapterGrid, CaseSizes, round_lr
from verify.profiles import ADAM_NOISE_STEP, PROFILES, get_profile, rlvr_lr


def test_round_lr_keeps_two_significant_digits():
    assert round_lr(3.14159e-4) == 3.1e-4
    assert round_lr(0.0123456) == 0.012
    assert round_lr(1.0) == 1.0


def test_rlvr_lr_rule_hand_computed():
    # |w| = 0.1235 lies in [2^-4, 2^-3): ULP 2^-11, half-ULP 2^-12
    expected = 0.03 * 2.0**-12 / math.sqrt(0.1 / 1.9)
    assert rlvr_lr(0.1235) == pytest.approx(float(f"{expected:.2g}"))
    assert ADAM_NOISE_STEP == pytest.approx(0.2294, abs=1e-4)
    p = get_profile("rlvr")
    assert p.sft_lr == pytest.approx(10 * p.rl_lr)
    # the measured step ratio of an rlvr RL run: lr * step fraction / half-ULP lands in the target band
    assert 0.01 <= p.rl_lr * ADAM_NOISE_STEP / half_ulp_bf16(0.1235) <= 0.05


def test_unknown_profile_is_refused_by_name():
    with pytest.raises(ConfigError, match="Unknown profile 'huge'.*tiny"):
        get_profile("huge")


@pytest.mark.parametrize("name", ["tiny", "quick"])
def test_case_size_rule_reproduces_the_profiles_that_give_them(name):
    """The tiny and quick case sizes are what the rule gives (tiny with 2 seeds instead of 3)."""
    p = PROFILES[name]
    derived = CaseSizes.derived(p)
    assert dataclasses.replace(derived, seeds=p.cases.seeds) == p.case_sizes


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_case_sizes_have_quarters_and_enough_snapshots(name):
    k = get_profile(name).cases
    assert k.rl_steps % (4 * k.rl_snapshot_every) == 0 and k.rl_steps // k.rl_snapshot_every >= 6
    assert k.sft_steps // k.sft_snapshot_every >= 6


def test_a_profile_without_knobs_derives_them_from_its_fields():
    p = dataclasses.replace(get_profile("quick"), name="made_up", rl_lr=2e-5, sft_lr=2e-4, adapter_grid=None,
                            case_sizes=None)
    k = p.adapters
    assert k == AdapterGrid.derived(p)
    assert k.lrs[0] == pytest.approx(2e-5) and k.lrs[-1] == pytest.approx(2e-3) and len(k.lrs) == 5
    assert k.full_lrs == pytest.approx((2e-5, 6e-5, 2e-4))
    assert k.sft_lrs[0] == pytest.approx(2e-4)
    assert p.cases == CaseSizes.derived(p)
    assert get_profile("rlvr").adapters.lrs[0] == pytest.approx(get_profile("rlvr").rl_lr)


def test_profiles_differ_only_by_their_entry():
    """Every profile is one entry of PROFILES: its name is its key and its knobs are typed."""
    for name, p in PROFILES.items():
        assert p.name == name
        assert isinstance(p.cases, CaseSizes) and isinstance(p.adapters, AdapterGrid)
        assert len(p.phase_grid.lrs) >= 3 and p.base.model.d_model in p.widths


def test_published_profile_is_built_on_a_ladder_rung_and_shares_quicks_ladder():
    from verify.experiments.ladder import ladder, rung_base
    from verify.profiles import PUBLISHED_BASE_MEDIAN_ABS_W, PUBLISHED_RUNG

    pub, quick = get_profile("published"), get_profile("quick")
    assert pub.base == rung_base(quick, PUBLISHED_RUNG, 0)  # the rung's seed-0 base, cached by the ladder
    assert ladder(pub) == ladder(quick)  # same specs: the ladder's runs are shared, not trained twice
    assert pub.rl_lr == rlvr_lr(PUBLISHED_BASE_MEDIAN_ABS_W) and pub.sft_lr == pytest.approx(10 * pub.rl_lr)
    assert len(pub.seeds) >= 3 and pub.ladder_grid.bases >= 3
    for name, specs in ladder(pub).items():
        assert len({s.base.train.seed for s in specs}) == len(specs)  # independent bases a rung
