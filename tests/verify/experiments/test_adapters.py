"""The adapter grid's run sets (verify/experiments/adapters.py): the rank rule scales with width, every profile's
grid meets the issue's size, every declared run is valid, fixed-step and records divergence, and the tiny grid
compiles few programs."""

import pytest

from toy_models.pretrain import PRESETS
from verify.experiments.adapters import ALPHA_PER_RANK, approximation, grid, rank_for, ranks
from verify.knobs import ADAPTER_KINDS
from verify.profiles import PROFILES, get_profile
from verify.runsets import leaves


def test_rank_rule_scales_with_width():
    fr = (1 / 16, 1 / 4, 1 / 2)
    assert [rank_for(f, PRESETS["tiny"].model) for f in fr] == [2, 8, 16]
    assert [rank_for(f, PRESETS["small"].model) for f in fr] == [4, 16, 32]
    assert ranks(get_profile("tiny")) == (1, 2) and ranks(get_profile("tiny"), "sft") == (1,)
    assert ranks(get_profile("quick")) == (2, 8, 16) and ranks(get_profile("quick"), "sft") == (8,)
    assert ranks(get_profile("full")) == (4, 16, 32) == ranks(get_profile("full"), "sft")


@pytest.mark.parametrize("name", ["quick", "full"])
def test_grid_profiles_meet_the_issue(name):
    p = get_profile(name)
    k = p.adapters
    assert len(k.lrs) >= 5 and max(k.lrs) / min(k.lrs) >= 100 - 1e-9
    assert k.seeds >= 3 and len(k.full_lrs) >= 3
    assert set(ADAPTER_KINDS) <= set(k.kinds) and {"lora", "pissa"} <= set(k.sft_kinds)
    # ranks {2, 8, 16} of the tiny base (d_model 32), scaled to the width of the profile's base
    assert ranks(p) == tuple(rank_for(f, p.base.model) for f in (2 / 32, 8 / 32, 16 / 32))
    assert set(ranks(p, "sft")) <= set(ranks(p))  # SFT minus RL is read at ranks both grids ran


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_declared_runs_are_valid_fixed_step_and_record_divergence(name):
    p = get_profile(name)
    specs = leaves(grid(p)) + leaves(approximation(p))  # RunSpec validates that every adapter fits the base
    assert all(s.train.target_gain is None and s.train.on_nan == "stop" for s in specs)
    k = p.adapters
    adapters = [s for s in specs if s.adapter.kind != "none"]
    assert all(s.adapter.alpha == ALPHA_PER_RANK * s.adapter.rank for s in adapters)
    assert {s.train.max_steps for s in specs if s.train.method == "rl"} == {k.steps}
    assert {s.train.max_steps for s in specs if s.train.method == "sft"} == {k.sft_steps}


def test_tiny_compile_bill_is_small():
    """On tiny, lora, pissa and milora of one rank share one merge (same rank, alpha, targets, k): one RL program per
    rank and one SFT program (rank 1 only); full fine-tuning runs at the profile's evaluation cadence, like the other
    claims' tiny runs."""
    p = get_profile("tiny")
    specs = leaves(grid(p)) + leaves(approximation(p))
    programs = set()
    for s in specs:
        a = s.adapter
        merge = None if a.kind == "none" else ("lora" if a.kind in ("pissa", "milora") else a.kind, a.rank, a.alpha, a.targets, a.k)
        programs.add((s.train.method, merge))
    adapter_programs = [x for x in programs if x[1] is not None]
    assert len(adapter_programs) == len(ranks(p)) + len(ranks(p, "sft")) == 3
    assert all(s.train.eval_every == p.eval_every for s in specs)
