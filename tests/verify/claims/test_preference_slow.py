"""Preference and forgetting claims, slow part: the three claims decide on the tiny profile inside `verify all` (their
report rows carry outcomes with intervals and thresholds, controls of both kinds and figures), and on a real tiny
single-task run the forgetting measure is exact for the trained task under planted forgetting."""

import numpy as np
import pytest

from toy_models.finetune import finetune
from toy_models.forgetting import run_forgetting
from verify.controls.forgetting import planted_forgetting, private_tokens
from verify.experiments.single_task import TASK, task_spec
from verify.measures.forgetting import N_CORPUS, N_PROBLEMS, forgetting, forgetting_of
from verify.profiles import get_profile
from verify.registry import CLAIM_STATUSES, REPRODUCED
from verify.runs import Context

pytestmark = pytest.mark.slow
IDS = ("preference.signatures", "forgetting.rl_vs_sft", "forgetting.predictor")


def test_the_claims_decide_on_tiny_with_outcomes_and_controls(tiny_report):
    rows = {c["id"]: c for c in tiny_report["report"]["claims"]}
    root = tiny_report["root"] / "report"
    for cid in IDS:
        c = rows[cid]
        assert c["kind"] == "claim" and c["rule_status"] in CLAIM_STATUSES, cid
        assert c["outcomes"] and all(o["kind"] in ("floor", "margin") for o in c["outcomes"].values()), cid
        assert all(o["source"].startswith(("paper", "a priori")) for o in c["outcomes"].values()), cid
        kinds = {k["kind"] for k in c["controls"]}
        assert "positive" in kinds and "negative" in kinds, cid
        assert all(k["status"] == REPRODUCED for k in c["controls"] if k["kind"] == "positive"), cid
        assert c["figures"] and all((root / f).exists() for f in c["figures"]), cid
        assert c["regime"], cid
    assert len(rows["preference.signatures"]["outcomes"]) == 10
    assert any(k["kind"] == "placebo" for k in rows["forgetting.rl_vs_sft"]["controls"])
    md = (root / "report.md").read_text()
    assert all(f"`{cid}`" in md for cid in IDS)


def test_planted_forgetting_on_a_real_run_spares_the_trained_task(session_runs, tmp_path):
    p = get_profile("tiny")
    run = finetune(task_spec(p, "dpo", 0))
    ctx = Context(p, tmp_path)
    first = forgetting(ctx, run)
    again = forgetting(Context(p, tmp_path), run)
    assert first == again  # deterministic: the run's own problems and key
    direct = run_forgetting(run, n_problems=N_PROBLEMS, n_corpus=N_CORPUS)  # the toy_models measure, unmemoised
    assert first["pass_change"] == direct["pass_change"] and first["forgetting"] == direct["forgetting"]
    assert first["ce_change"] == pytest.approx(direct["ce_change"], rel=1e-6)
    spec = run.spec
    tokens = private_tokens(spec.base.corpus.tasks, spec.tasks, spec.base.corpus.size)
    planted = forgetting_of(ctx, run, planted_forgetting(run.snapshot("final"), tokens, 0))
    assert planted["pass_change"][TASK] == first["pass_change"][TASK]  # the trained task computes the same
    assert planted["forgetting"] > first["forgetting"] + 0.1
    assert np.isfinite(planted["ce_change"]) and planted["ce_change"] > first["ce_change"]
