"""masked.rl's decision rule (verify/claims/masked.py, C14) on hand-made and planted numbers, every outcome of its
three parts reached, and its controls coming out the way they must."""

from verify.claims import masked as cm
from verify.controls.numbers import planted_masked_gains
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

DENSE = [0.10, 0.12, 0.11, 0.105, 0.115]


def shifted(values, *shifts):
    return [v + s for v, s in zip(values, shifts)]


def test_planted_gains_reproduce():
    for seed in range(5):
        status, out = cm.decide_masked(*planted_masked_gains(cm.PLANTED_SEED + seed))
        assert status == REPRODUCED, {k: o.interval.text() for k, o in out.items()}


def test_principal_cost_reaches_every_outcome():
    safe, random = DENSE, [d - 0.04 for d in DENSE]
    principal = shifted(DENSE, -0.05, -0.06, -0.055, -0.05, -0.06)
    assert cm.decide_masked(DENSE, principal, safe, random)[1]["dense - principal"].status == REPRODUCED
    principal_more = shifted(DENSE, 0.02, 0.03, 0.025, 0.02, 0.03)  # principal-only gains more than dense
    status, out = cm.decide_masked(DENSE, principal_more, safe, random)
    assert status == NOT_REPRODUCED and out["dense - principal"].status == NOT_REPRODUCED
    straddles = shifted(DENSE, -0.06, 0.02, -0.01, -0.04, 0.0)
    status, out = cm.decide_masked(DENSE, straddles, safe, random)
    assert status == INCONCLUSIVE and out["dense - principal"].status == INCONCLUSIVE


def test_tracks_dense_reaches_every_outcome():
    principal, random = [d - 0.05 for d in DENSE], [d - 0.08 for d in DENSE]
    close = shifted(DENSE, 0.003, -0.002, 0.001, -0.003, 0.002)
    assert cm.decide_masked(DENSE, principal, close, random)[1]["dense - safe"].status == REPRODUCED
    far = shifted(DENSE, -0.06, -0.07, -0.065, -0.06, -0.07)  # safe gains far less than dense
    status, out = cm.decide_masked(DENSE, principal, far, [d - 0.05 for d in far])
    assert status == NOT_REPRODUCED and out["dense - safe"].status == NOT_REPRODUCED
    # the interval contains 0 but is too wide to show equivalence within +-0.02: no statement of absence
    wide = shifted(DENSE, 0.04, -0.04, 0.03, -0.03, 0.0)
    status, out = cm.decide_masked(DENSE, principal, wide, [d - 0.08 for d in DENSE])
    lo, hi = out["dense - safe"].interval.bounds()
    assert status == INCONCLUSIVE and out["dense - safe"].status == INCONCLUSIVE and lo < 0 < hi


def test_beyond_density_reaches_every_outcome():
    principal = [d - 0.05 for d in DENSE]
    assert cm.decide_masked(DENSE, principal, DENSE, [d - 0.04 for d in DENSE])[1]["safe - random"].status == REPRODUCED
    better_random = shifted(DENSE, 0.02, 0.025, 0.02, 0.03, 0.02)
    status, out = cm.decide_masked(DENSE, principal, DENSE, better_random)
    assert status == NOT_REPRODUCED and out["safe - random"].status == NOT_REPRODUCED
    status, out = cm.decide_masked(DENSE, principal, DENSE, shifted(DENSE, -0.04, 0.03, -0.01, 0.02, 0.0))
    assert status == INCONCLUSIVE and out["safe - random"].status == INCONCLUSIVE


def test_negative_control_fails_when_a_random_mask_also_tracks_dense():
    """The random mask of the safe mask's density in the safe role: when it tracks dense as closely, 'tracks dense'
    reads REPRODUCED on it and the finisher must turn the verdict into CONTROL FAILED; when it falls behind, it does not."""
    assert cm.TRACKS.decide(cm._diff(DENSE, shifted(DENSE, 0.002, -0.001, 0.0, 0.001, -0.002))).status == REPRODUCED
    assert cm.TRACKS.decide(cm._diff(DENSE, [d - 0.05 for d in DENSE])).status == NOT_REPRODUCED


def test_a_mask_that_leaked_makes_the_claim_inconclusive():
    assert cm.decide_masked(*planted_masked_gains(cm.PLANTED_SEED), frozen_changed=3)[0] == INCONCLUSIVE


def test_masked_runs_use_every_profile_seed_on_quick():
    """Quick runs C14 on its 5 profile seeds (more than the 3 case seeds); the dense runs of the case seeds are the
    case studies' shared RL runs."""
    from verify.experiments import cases
    from verify.profiles import get_profile

    p = get_profile("quick")
    runs = cases.masked(p)
    assert cases.masked_seeds(p) == p.seeds and len(p.seeds) >= 5
    assert all([s.train.seed for s in v] == list(p.seeds) for v in runs.values())
    assert set(cases.rl_run(p, s) for s in cases.case_seeds(p)) <= set(runs["dense"])
    tiny = get_profile("tiny")
    assert cases.masked_seeds(tiny) == cases.case_seeds(tiny)
