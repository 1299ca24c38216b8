"""Experiments and run sets (verify/experiments/, verify/runsets.py): the leaves of a run set, mapping them to
finished runs with the structure kept, the matched experiment shared by the claims, the learning-rate rules of
the sweeps, and the predictor's run set (every plain run of the core claims, none of its own)."""

import dataclasses

import pytest

from verify.experiments import adapters as EA
from verify.experiments import cases as EC
from verify.experiments import sweeps as ES
from verify.experiments.matched import Matched, core_plain_runs, matched
from verify.profiles import get_profile
from verify.registry import load_all
from verify.runsets import leaves, map_runs

P = get_profile("tiny")


def test_leaves_follow_declaration_order_through_every_container():
    m = matched(P)
    tree = {"matched": m, "extra": [P.control(0)], "label": "not a run", "lr": 1e-3}
    assert leaves(tree) == [*m.rl, *m.sft, P.control(0)]
    assert leaves(P.rl(0)) == [P.rl(0)]
    assert leaves({"nothing": (1, "a")}) == []


def test_map_runs_keeps_the_structure_and_the_other_leaves():
    m = matched(P)
    tree = {"matched": m, "grid": {("lora", 1, 1e-3, 0): P.rl(0)}, "seed": 3}
    out = map_runs(tree, lambda spec: (spec.train.method, spec.train.seed))
    assert isinstance(out["matched"], Matched) and out["matched"].seeds == m.seeds
    assert out["matched"].rl == tuple(("rl", s) for s in P.seeds) and out["matched"].sft == tuple(("sft", s) for s in P.seeds)
    assert out["grid"] == {("lora", 1, 1e-3, 0): ("rl", 0)} and out["seed"] == 3


def test_matched_is_one_definition_read_by_most_claims():
    """The matched RL and SFT runs are the profile's RL and SFT run of each seed, and most claims read them."""
    m = matched(P)
    assert m.rl == tuple(P.rl(s) for s in P.seeds) and m.sft == tuple(P.sft(s) for s in P.seeds)
    assert all(s.train.target_gain == P.target_gain for s in m.rl + m.sft)
    readers = [c.id for c in load_all().values() if set(m.rl) <= set(c.specs(P))]
    assert len(readers) >= 12 and {"gate2.bounds", "gate3.sparsity", "consistency.jaccard", "regime.magnitude"} <= set(readers)


def test_predictor_reads_only_runs_other_claims_declare():
    claims = load_all()
    others = {s for c in claims.values() if c.id != "regime.predictor" and not c.sweep for s in c.specs(P)}
    runs = core_plain_runs(P)
    assert runs and set(runs) <= others and len(set(runs)) == len(runs)
    assert all(s.train.precision == "fp32_master" and s.adapter.kind == "none" for s in runs)


def test_width_family_and_lr():
    p = get_profile("quick")
    assert ES.width_base(p, 32) == p.base
    b = ES.width_base(p, 128)
    assert (b.model.d_model, b.model.d_ff, b.model.n_heads, b.model.n_layers) == (128, 256, 8, p.base.model.n_layers)
    assert ES.width_lr(p, 128) == pytest.approx(p.rl_lr / 2)
    assert list(ES.widths(p)) == list(p.widths)


def test_sgd_rates_scale_and_fall_back():
    p = get_profile("quick")
    assert ES.sgd_lr(p, "rl", 10.0) == pytest.approx(10 * ES.sgd_lr(p, "rl", 1.0), rel=0.05)
    root_n, g1 = p.sgd_first_step
    assert EC.sgd_lr(p) == pytest.approx(float(f"{p.rl_lr * root_n / g1:.2g}"))
    derived = EC.sgd_lr(dataclasses.replace(p, sgd_first_step=None))
    assert 0.5 * EC.sgd_lr(p) < derived < 2 * EC.sgd_lr(p)  # the fallback lands near the measured rule


def test_case_runs_share_their_compiled_segment_and_have_quarters():
    k = P.cases
    spec = EC.rl_run(P, 0)
    assert spec.train.max_steps == k.rl_steps and spec.train.target_gain is None
    assert spec.train.snapshot_steps == tuple(range(k.rl_snapshot_every, k.rl_steps + 1, k.rl_snapshot_every))
    assert spec.train.checkpoint_every == P.eval_every
    runs = EC.intervention(P)
    assert set(runs) == set(EC.EDIT_KINDS)
    assert runs["adamw"]["references"][0] == EC.rl_run(P, EC.case_seeds(P)[0])
    assert all(r.edit.kind == kind for arm in runs.values() for kind, rs in arm["edited"].items() for r in rs)
    assert set(EC.masked(P)) == set(EC.MASK_KINDS) and EC.masked(P)["dense"][0] == EC.rl_run(P, EC.case_seeds(P)[0])


def test_adapter_grid_runs_are_cells():
    g = EA.grid(P)
    assert set(g) == {"rl", "sft"}
    for method, cells in g.items():
        for (kind, rank, lr, seed), spec in cells.items():
            assert spec == EA.cell_spec(P, method, kind, rank, lr, seed)
    assert set(EA.approximation(P)["rl"]) >= set(EA.rank1_cells(P))
