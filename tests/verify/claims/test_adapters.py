"""The adapter claims' logic without training (verify/claims/adapters.py, claims C15 and C16): decision rules on
planted grids in both directions, the collapse and target-step readouts, the rank-r energy share against updates of
known spectrum, the rank rule and the declared runs of every profile."""

import math

import numpy as np
import pytest

from toy_models.pretrain import PRESETS
from verify.claims import adapters as A
from verify.profiles import PROFILES, get_profile
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, load_all

INF = (math.inf, math.inf)


# ------------------------------------------------------------------ decide_grid (C15)


def test_grid_reproduced_when_pissa_no_better_and_collapses_at_a_lower_rate():
    status, d = A.decide_grid([0.30, 0.32, 0.28], [0.29, 0.31, 0.30],
                              [A.collapse_key(3e-2, 60)] * 3, [A.collapse_key(1e-2, 70)] * 3)
    assert status == REPRODUCED
    assert (d["pissa_first"], d["lora_first"], d["pairs"]) == (3, 0, 3)


def test_grid_not_reproduced_when_pissa_gains_more():
    lora = [0.30, 0.31, 0.29, 0.30]
    status, d = A.decide_grid(lora, [g + 0.1 for g in lora], [A.collapse_key(3e-2, 60)] * 4, [A.collapse_key(1e-2, 60)] * 4)
    assert d["gain_diff"].low > 0
    assert status == NOT_REPRODUCED


def test_grid_not_reproduced_when_lora_collapses_first_in_more_pairs():
    status, d = A.decide_grid([0.3] * 3, [0.3] * 3, [A.collapse_key(1e-2, 50), A.collapse_key(1e-2, 50), INF],
                              [A.collapse_key(3e-2, 50), INF, A.collapse_key(1e-1, 40)])
    assert (d["pissa_first"], d["lora_first"]) == (1, 2)
    assert status == NOT_REPRODUCED


def test_grid_inconclusive_without_collapse_or_with_ties():
    assert A.decide_grid([0.3, 0.2], [0.25, 0.2], [INF, INF], [INF, INF])[0] == INCONCLUSIVE
    key = A.collapse_key(3e-2, 40)
    assert A.decide_grid([0.3, 0.2], [0.25, 0.2], [key, key], [key, key])[0] == INCONCLUSIVE


def test_grid_same_rate_earlier_onset_counts_as_sooner():
    status, d = A.decide_grid([0.3, 0.3], [0.3, 0.3], [A.collapse_key(3e-2, 80)] * 2, [A.collapse_key(3e-2, 40)] * 2)
    assert d["pissa_first"] == 2 and status == REPRODUCED


def test_grid_self_comparison_never_reproduces():
    rng = np.random.default_rng(0)
    gains = rng.uniform(0, 0.4, 6).tolist()
    keys = [A.collapse_key(lr, 50) for lr in (1e-2, 3e-2, None, 1e-1, 1e-2, None)]
    assert A.decide_grid(gains, gains, keys, keys)[0] != REPRODUCED


class _StubGrid:
    """The two Grid methods null_pairs reads, from per-rank (gains, collapse keys) lists."""

    def __init__(self, per_rank):
        self.per_rank = per_rank

    def best(self, kind, rank):
        return 1e-2, self.per_rank[rank][0]

    def collapse_keys(self, kind, rank):
        return list(self.per_rank[rank][1])


def test_null_pair_ties_with_two_seeds_and_can_fire_with_three():
    k = A.collapse_key
    two = _StubGrid({1: ([0.3, 0.1], [k(1e-2, 40), INF]), 2: ([0.2, 0.25], [k(1e-1, 20), k(3e-2, 20)])})
    lora, other, lk, ok = A.null_pairs(two, (1, 2))
    assert other == [0.1, 0.3, 0.25, 0.2] and ok == [INF, k(1e-2, 40), k(3e-2, 20), k(1e-1, 20)]
    status, d = A.decide_grid(lora, other, lk, ok)
    assert d["pissa_first"] == d["lora_first"] == 2 and status == INCONCLUSIVE
    # three seeds whose LoRA collapses at falling rates: the cyclic shift puts the lower collapsing rate in PiSSA's
    # place in two of three pairs, so the "more pairs" rule fires on one method against itself (the control can fail)
    three = _StubGrid({8: ([0.3, 0.3, 0.3], [k(1e-1, 40), k(3e-2, 40), k(1e-2, 40)])})
    status, d = A.decide_grid(*A.null_pairs(three, (8,)))
    assert (d["pissa_first"], d["lora_first"]) == (2, 1) and status == REPRODUCED


def test_edge_notes_flag_a_best_rate_at_either_end_of_its_grid():
    class G:
        method = "rl"

        def lrs(self, kind, rank):
            return [1e-4, 1e-3, 3e-3] if kind == A.FULL else [1e-3, 1e-2, 1e-1]

    notes = A.edge_notes(G(), {(A.FULL, 0): (3e-3, []), ("lora", 2): (1e-2, []), ("pissa", 2): (1e-3, [])})
    assert len(notes) == 2
    assert "full fine-tuning: best rate 0.003 is the highest" in notes[0]
    assert "pissa r2: best rate 0.001 is the lowest" in notes[1]


def test_grid_planted_controls_flip():
    assert A.decide_grid(*A.planted_grid(0.0, -1))[0] == REPRODUCED
    assert A.decide_grid(*A.planted_grid(0.1, +5, seed=1))[0] == NOT_REPRODUCED


# ------------------------------------------------------------------ decide_match (C16)


def test_match_both_directions_and_undecided():
    assert A.decide_match(*A.planted_match(0.0))[0] == REPRODUCED
    assert A.decide_match(*A.planted_match(-4 * A.MATCH_MARGIN, seed=1))[0] == NOT_REPRODUCED
    assert A.decide_match([0.5, 0.5, 0.5], [0.3, 0.3, 0.3])[0] == REPRODUCED  # better than full also reaches it
    assert A.decide_match([0.30, 0.10, 0.25], [0.3, 0.3, 0.3])[0] == INCONCLUSIVE  # wide CI across the margin


# ------------------------------------------------------------------ per-run readouts


def test_collapse_point_nan_heldout_and_reward():
    steps = [10, 20, 30, 40]
    assert A.collapse_point(steps, [0.05, 0.1, 0.12, 0.15]) == (False, None, "")
    # transient dip below the margin then recovery: not a collapse
    assert A.collapse_point(steps, [0.05, -0.2, 0.0, 0.02])[0] is False
    # ends below: onset is the first evaluation from which it stays below
    assert A.collapse_point(steps, [0.05, -0.15, -0.11, -0.2]) == (True, 20, "held-out")
    assert A.collapse_point(steps, [-0.15, 0.0, -0.11, -0.2]) == (True, 30, "held-out")
    assert A.collapse_point(steps, [-0.15, -0.2, -0.11, -0.2]) == (True, 10, "held-out")
    # divergence wins when it is earliest
    assert A.collapse_point(steps[:2], [0.05, -0.3], diverged_at=15) == (True, 15, "NaN")
    # reward windows of 5 steps against the base accuracy 0.4: windows 0.4, 0.25, 0.45, 0.2, 0.1 -> onset end of window 4
    rewards = np.repeat([0.4, 0.25, 0.45, 0.2, 0.1], 5)
    assert A.collapse_point([25], [0.0], rewards, window=5, base_acc=0.4) == (True, 20, "reward")
    assert A.collapse_point([25], [0.0], rewards[:15], window=5, base_acc=0.4)[0] is False
    assert A.collapse_point([25], [0.0], rewards, window=5)[0] is False  # no base accuracy: the reward test is off
    # an incomplete last window is ignored
    assert A.collapse_point([25], [0.0], np.r_[np.full(10, 0.4), [0.0, 0.0]], window=5, base_acc=0.4)[0] is False


def test_steps_to_target_and_best_lr():
    assert A.steps_to_target([10, 20, 30], [0.02, 0.11, 0.09], 0.1) == 20
    assert A.steps_to_target([10, 20], [0.02, 0.05], 0.1) is None
    assert A.best_lr({1e-3: [0.1, 0.2], 1e-2: [0.3, 0.2], 1e-1: [-0.2, float("nan")]}) == 1e-2
    assert A.best_lr({1e-3: [0.2], 1e-2: [0.2]}) == 1e-3  # ties: the smaller rate
    assert A.best_lr({1e-3: [float("nan")], 1e-2: [0.0]}) == 1e-2


def test_first_collapse_and_key_order():
    assert A.first_collapse([1e-3, 1e-2, 1e-1], [False, True, True], [None, 50, 20]) == (1e-2, 50)
    assert A.first_collapse([1e-3, 1e-2], [False, False], [None, None]) == (None, None)
    assert A.collapse_key(1e-2, 50) < A.collapse_key(3e-2, 10) < A.collapse_key(3e-2, 20) < A.collapse_key(None, None)


# ------------------------------------------------------------------ rank-r energy share


def _known(m, n, s, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = len(s)
    return U[:, :k] @ np.diag(s) @ V[:, :k].T


def test_rank_energy_share_matches_a_known_spectrum():
    s = np.array([3.0, 2.0, 1.0, 0.5])
    dW = _known(32, 64, s)
    total = np.sum(s**2)
    for r in range(1, 5):
        assert A.rank_energy_share(dW, r) == pytest.approx(np.sum(s[:r] ** 2) / total, rel=1e-10)
    assert A.rank_energy_share(dW, 100) == pytest.approx(1.0)  # r capped at min(m, n)
    assert A.rank_energy_share(5.0 * dW.T, 2) == pytest.approx(13 / total.item(), rel=1e-10)  # scale and transpose free


def test_ranks_for_energy_and_curves_on_planted_pairs():
    W0 = np.zeros((32, 32))
    pairs = {"a": (W0, _known(32, 32, [3.0, 0.5], 1)), "b": (W0, _known(32, 32, [1.0, 1.0, 1.0, 1.0, 1.0], 2))}
    assert A.ranks_for_energy(pairs, 0.9) == pytest.approx((1 + 5) / 2)
    curve = A.energy_curve(pairs, (1, 2))
    assert curve[1] == pytest.approx((9 / 9.25 + 0.2) / 2)
    assert curve[2] == pytest.approx((1.0 + 0.4) / 2)


def test_isotropic_share_is_a_proper_reference():
    vals = [A.isotropic_energy_share(32, 64, r, draws=8) for r in (1, 4, 16, 32)]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert vals[-1] == pytest.approx(1.0)
    assert 1 / 32 < vals[0] < 0.2  # the top direction of noise holds more than its 1/min(m, n) share, but little


# ------------------------------------------------------------------ knobs, ranks and declared runs


def test_rank_rule_scales_with_width():
    fr = (1 / 16, 1 / 4, 1 / 2)
    assert [A.rank_for(f, PRESETS["tiny"].model) for f in fr] == [2, 8, 16]
    assert [A.rank_for(f, PRESETS["small"].model) for f in fr] == [4, 16, 32]
    assert A.ranks(get_profile("tiny")) == (1, 2) and A.ranks(get_profile("tiny"), "sft") == (1,)
    assert A.ranks(get_profile("quick")) == (2, 8, 16) and A.ranks(get_profile("quick"), "sft") == (8,)
    assert A.ranks(get_profile("full")) == (4, 16, 32) == A.ranks(get_profile("full"), "sft")


@pytest.mark.parametrize("name", ["quick", "full"])
def test_grid_profiles_meet_the_issue(name):
    p = get_profile(name)
    k = A.knobs(p)
    assert len(k.lrs) >= 5 and max(k.lrs) / min(k.lrs) >= 100 - 1e-9
    assert k.seeds >= 3 and len(k.full_lrs) >= 3
    assert set(A.KINDS) <= set(k.kinds) and {"lora", "pissa"} <= set(k.sft_kinds)
    # ranks {2, 8, 16} of the tiny base (d_model 32), scaled to the width of the profile's base
    assert A.ranks(p) == tuple(A.rank_for(f, p.base.model) for f in (2 / 32, 8 / 32, 16 / 32))
    assert set(A.ranks(p, "sft")) <= set(A.ranks(p))  # SFT minus RL is read at ranks both grids ran


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_declared_runs_are_valid_fixed_step_and_record_divergence(name):
    p = get_profile(name)
    specs = A.grid_runs(p) + A.approximation_runs(p)  # RunSpec validates that every adapter fits the base
    assert all(s.train.target_gain is None and s.train.on_nan == "stop" for s in specs)
    k = A.knobs(p)
    adapters = [s for s in specs if s.adapter.kind != "none"]
    assert all(s.adapter.alpha == A.ALPHA_PER_RANK * s.adapter.rank for s in adapters)
    assert {s.train.max_steps for s in specs if s.train.method == "rl"} == {k.steps}
    assert {s.train.max_steps for s in specs if s.train.method == "sft"} == {k.sft_steps}


def test_tiny_compile_bill_is_small():
    """On tiny, lora, pissa and milora of one rank share one merge (same rank, alpha, targets, k): one RL program per
    rank and one SFT program (rank 1 only); full fine-tuning runs at the profile's evaluation cadence, like the other
    claims' tiny runs."""
    p = get_profile("tiny")
    specs = A.grid_runs(p) + A.approximation_runs(p)
    programs = set()
    for s in specs:
        a = s.adapter
        merge = None if a.kind == "none" else ("lora" if a.kind in ("pissa", "milora") else a.kind, a.rank, a.alpha, a.targets, a.k)
        programs.add((s.train.method, merge))
    adapter_programs = [x for x in programs if x[1] is not None]
    assert len(adapter_programs) == len(A.ranks(p)) + len(A.ranks(p, "sft")) == 3
    assert all(s.train.eval_every == p.eval_every for s in specs)


def test_claims_are_registered_with_their_runs():
    claims = load_all()
    p = get_profile("quick")
    grid, approx = claims["adapters.grid"], claims["adapters.approximation"]
    assert grid.paper_claims == ("C15",) and approx.paper_claims == ("C16",)
    k = A.knobs(p)
    n_rl = (len(k.kinds) * len(A.ranks(p)) * len(k.lrs) + len(k.full_lrs)) * k.seeds
    n_sft = (len(k.sft_kinds) * len(A.ranks(p, "sft")) * len(k.sft_lrs) + len(k.sft_full_lrs)) * k.seeds
    assert len(grid.runs(p)) == n_rl + n_sft
    rank1 = [s for s in approx.runs(p) if s.adapter.kind == "lora" and s.adapter.rank == 1]
    assert len(rank1) == len(k.lrs) * k.seeds
    assert "quick" in grid.rule and str(A.COLLAPSE_DROP) in grid.rule
