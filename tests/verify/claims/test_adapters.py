"""The adapter claims' decision rules (verify/claims/adapters.py, C15 and C16) on planted grids and hand-made
numbers in both directions and undecided, the null-pair control, the edge notes, and the claims' registration."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from verify.claims import adapters as A
from verify.controls.numbers import null_pairs, planted_grid, planted_match
from verify.experiments.adapters import FULL, ranks
from verify.measures.adapter_grid import collapse_key
from verify.measures.training import COLLAPSE_DROP
from verify.profiles import get_profile
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, load_all
from verify.rules import AT_THE_EDGE, UNDERPOWERED

INF = (math.inf, math.inf)


# ------------------------------------------------------------------ decide_grid (C15)

LORA6 = [0.30, 0.32, 0.28, 0.31, 0.29, 0.30]
PISSA6 = [0.29, 0.31, 0.30, 0.30, 0.30, 0.29]


def test_sign_test_reaches_every_outcome():
    rule = A.COLLAPSES_SOONER
    out = rule.decide(5, 0)
    assert out.status == REPRODUCED and out.interval.mean == pytest.approx(1 / 32) and out.kind == "test"
    assert rule.decide(6, 1).interval.mean == pytest.approx(binomtest(6, 7, 0.5, alternative="greater").pvalue)
    assert rule.decide(0, 5).status == NOT_REPRODUCED  # LoRA collapses at the lower rate: the other side's p 1/32
    four = rule.decide(4, 0)  # p 1/16: no count of 4 pairs can reach 0.05
    assert four.status == INCONCLUSIVE and UNDERPOWERED in four.qualifiers
    six_four = rule.decide(6, 4)
    assert six_four.status == INCONCLUSIVE and UNDERPOWERED not in six_four.qualifiers
    assert rule.decide(0, 0).status == INCONCLUSIVE
    with pytest.raises(ValueError, match="source"):
        A.SignTest("x", 0.05, "chosen after looking")


def test_grid_reproduced_when_pissa_no_better_and_collapses_at_a_lower_rate():
    status, no_gain, sooner, d = A.decide_grid(LORA6, PISSA6, [collapse_key(3e-2, 60)] * 6, [collapse_key(1e-2, 70)] * 6)
    assert (no_gain.status, sooner.status, status) == (REPRODUCED, REPRODUCED, REPRODUCED)
    assert (d["pissa_first"], d["lora_first"], d["pairs"]) == (6, 0, 6)


def test_grid_four_of_four_pairs_is_not_enough():
    # the old rule's "more pairs" fired on 4 vs 0 (one-sided sign test p = 0.0625)
    status, no_gain, sooner, d = A.decide_grid(LORA6[:4], PISSA6[:4], [collapse_key(3e-2, 60)] * 4,
                                               [collapse_key(1e-2, 60)] * 4)
    assert (d["pissa_first"], d["lora_first"]) == (4, 0) and sooner.interval.mean == pytest.approx(1 / 16)
    assert status == INCONCLUSIVE and UNDERPOWERED in sooner.qualifiers


def test_grid_not_reproduced_when_pissa_gains_more():
    status, no_gain, sooner, _ = A.decide_grid(LORA6, [g + 0.1 for g in LORA6], [collapse_key(3e-2, 60)] * 6,
                                               [collapse_key(1e-2, 60)] * 6)
    assert no_gain.status == NOT_REPRODUCED and sooner.status == REPRODUCED and status == NOT_REPRODUCED


def test_grid_not_reproduced_when_lora_collapses_at_the_lower_rate():
    status, no_gain, sooner, d = A.decide_grid(LORA6, PISSA6, [collapse_key(1e-2, 50)] * 6,
                                               [collapse_key(3e-2, 50)] * 5 + [INF])  # PiSSA never collapses in one
    assert (d["pissa_first"], d["lora_first"]) == (0, 6)
    assert no_gain.status == REPRODUCED and sooner.status == NOT_REPRODUCED and status == NOT_REPRODUCED


def test_grid_inconclusive_without_collapse_with_ties_or_a_wide_gain_interval():
    assert A.decide_grid([0.3, 0.2], [0.25, 0.2], [INF, INF], [INF, INF])[0] == INCONCLUSIVE
    key = collapse_key(3e-2, 40)
    assert A.decide_grid([0.3, 0.2], [0.25, 0.2], [key, key], [key, key])[0] == INCONCLUSIVE
    # the gain interval contains 0 but is too wide for equivalence: INCONCLUSIVE, not "no gain"
    status, no_gain, sooner, _ = A.decide_grid(LORA6, [0.10, 0.50, 0.20, 0.45, 0.15, 0.40],
                                               [collapse_key(3e-2, 60)] * 6, [collapse_key(1e-2, 60)] * 6)
    lo, hi = no_gain.interval.bounds()
    assert lo < 0 < hi and no_gain.status == INCONCLUSIVE and sooner.status == REPRODUCED and status == INCONCLUSIVE


def test_grid_same_rate_with_an_earlier_onset_is_a_tie():
    # the rule compares collapsing rates; onset steps at one rate do not make a pair discordant
    _, _, sooner, d = A.decide_grid(LORA6, PISSA6, [collapse_key(3e-2, 80)] * 6, [collapse_key(3e-2, 40)] * 6)
    assert (d["pissa_first"], d["lora_first"]) == (0, 0) and sooner.status == INCONCLUSIVE


def test_grid_self_comparison_never_reproduces():
    rng = np.random.default_rng(0)
    gains = rng.uniform(0, 0.4, 6).tolist()
    keys = [collapse_key(lr, 50) for lr in (1e-2, 3e-2, None, 1e-1, 1e-2, None)]
    assert A.decide_grid(gains, gains, keys, keys)[0] != REPRODUCED


class _StubGrid:
    """The two Grid methods null_pairs reads, from per-rank (gains, collapse keys) lists."""

    def __init__(self, per_rank):
        self.per_rank = per_rank

    def best(self, kind, rank):
        return 1e-2, self.per_rank[rank][0]

    def collapse_keys(self, kind, rank):
        return list(self.per_rank[rank][1])


def test_null_pair_ties_with_two_seeds_and_does_not_fire_with_three():
    k = collapse_key
    two = _StubGrid({1: ([0.3, 0.1], [k(1e-2, 40), INF]), 2: ([0.2, 0.25], [k(1e-1, 20), k(3e-2, 20)])})
    lora, other, lk, ok = null_pairs(two, (1, 2))
    assert other == [0.1, 0.3, 0.25, 0.2] and ok == [INF, k(1e-2, 40), k(3e-2, 20), k(1e-1, 20)]
    status, _, sooner, d = A.decide_grid(lora, other, lk, ok)
    assert d["pissa_first"] == d["lora_first"] == 2 and status == INCONCLUSIVE
    # three seeds whose LoRA collapses at falling rates: the cyclic shift puts the lower rate in PiSSA's place in two of
    # three pairs; the old "more pairs" count fired on that (one method against itself), the sign test does not
    three = _StubGrid({8: ([0.3, 0.3, 0.3], [k(1e-1, 40), k(3e-2, 40), k(1e-2, 40)])})
    status, _, sooner, d = A.decide_grid(*null_pairs(three, (8,)))
    assert (d["pissa_first"], d["lora_first"]) == (2, 1) and sooner.interval.mean == pytest.approx(0.5)
    assert status == INCONCLUSIVE


def test_edge_notes_flag_a_best_rate_at_either_end_of_its_grid():
    class G:
        method = "rl"

        def lrs(self, kind, rank):
            return [1e-4, 1e-3, 3e-3] if kind == FULL else [1e-3, 1e-2, 1e-1]

    notes = A.edge_notes(G(), {(FULL, 0): (3e-3, []), ("lora", 2): (1e-2, []), ("pissa", 2): (1e-3, [])})
    assert len(notes) == 2
    assert "full fine-tuning: best rate 0.003 is the highest" in notes[0]
    assert "pissa r2: best rate 0.001 is the lowest" in notes[1]


def test_grid_planted_controls_flip():
    assert A.decide_grid(*planted_grid(0.0, -1))[0] == REPRODUCED
    assert A.decide_grid(*planted_grid(0.1, +5, seed=1))[0] == NOT_REPRODUCED


# ------------------------------------------------------------------ decide_match (C16)


def test_match_reaches_every_outcome():
    assert A.decide_match(*planted_match(0.0)).status == REPRODUCED
    assert A.decide_match(*planted_match(-4 * A.MATCH_MARGIN, seed=1)).status == NOT_REPRODUCED
    assert A.decide_match([0.5, 0.5, 0.5], [0.3, 0.3, 0.3]).status == REPRODUCED  # better than full also reaches it
    wide = A.decide_match([0.30, 0.10, 0.25], [0.3, 0.3, 0.3])  # interval across the -0.05 floor
    assert wide.status == INCONCLUSIVE and wide.threshold == -A.MATCH_MARGIN
    edge = A.decide_match([0.26, 0.24, 0.25, 0.27, 0.23], [0.3] * 5)  # mean -0.05: at the floor
    assert edge.status == INCONCLUSIVE and AT_THE_EDGE in edge.qualifiers


def test_claims_are_registered_with_their_runs():
    claims = load_all()
    p = get_profile("quick")
    grid, approx = claims["adapters.grid"], claims["adapters.approximation"]
    assert grid.paper_claims == ("C15",) and approx.paper_claims == ("C16",)
    k = p.adapters
    n_rl = (len(k.kinds) * len(ranks(p)) * len(k.lrs) + len(k.full_lrs)) * k.seeds
    n_sft = (len(k.sft_kinds) * len(ranks(p, "sft")) * len(k.sft_lrs) + len(k.sft_full_lrs)) * k.seeds
    assert len(grid.specs(p)) == n_rl + n_sft
    rank1 = [s for s in approx.specs(p) if s.adapter.kind == "lora" and s.adapter.rank == 1]
    assert len(rank1) == len(k.lrs) * k.seeds
    assert "quick" in grid.rule and str(COLLAPSE_DROP) in grid.rule
