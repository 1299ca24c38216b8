"""The finisher (verify/finish.py) and the regime record (verify/regime_record.py): a measurement without both
kinds of control is refused, a control that does not come out the way it must turns the verdict into CONTROL
FAILED (a placebo: 'explained by update size'), a check reads PASS / FAIL and a claim never does, qualifiers reach
the verdict cell, figures are saved under the claim's id, stop notes name the runs that missed the matched point,
and every run's regime numbers and their per-role medians travel with the verdict. A claim that crashes reads
ERROR and the command exits non-zero. The run lookup of the Context names every run that did not finish."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from toy_models.runs import run_dir
from verify.finish import finish, stop_notes
from verify.profiles import get_profile
from verify.regime_record import regime_summary, regime_text, run_record
from verify.registry import CONTROL_FAILED, ERROR, Claim, Measurement, Verdict, negative, placebo, positive
from verify.rules import AT_THE_EDGE, UNDERPOWERED, AtLeast, Interval
from verify.runs import Context, RunNotReady

P = get_profile("tiny")
CLAIM = Claim("gate9.test", ("C0",), "a test claim", "none", "a rule", lambda p: [], lambda ctx, runs: None)
CHECK = Claim("gate9.check", ("C0",), "a test check", "none", "a rule", lambda p: [], lambda ctx, runs: None,
              kind="check")


class _Run:
    """What the finisher reads of a finished run: its spec, folder and summary."""

    def __init__(self, spec, steps, reason, gain, drift):
        self.spec, self.directory = spec, Path(f"/runs/{spec.train.method}-{spec.train.seed}-{spec.train.lr:g}")
        self.summary = {"stopped_at": steps, "reason": reason, "gain": gain, "kl_to_base_final": 0.1,
                        "regime": {"step_ratio": 0.1, "drift_ratio": drift}}


RUNS = [_Run(P.rl(0), 8, "target_gain", 0.9, 2.0), _Run(P.rl(1), 12, "max_steps", 0.5, 4.0),
        _Run(P.sft(0), 10, "target_gain", 0.95, 30.0), _Run(P.rl(0, lr=1e-2, steps=4, matched=False), 4, "max_steps", 0.1, 90.0)]


def _measurement(controls, figures=(), status="REPRODUCED", **kw):
    return Measurement(status, "headline", {"x": 1.0}, controls, list(figures), RUNS + RUNS[:1], ["a note"], **kw)


OK = [positive("p", "REPRODUCED"), negative("n", "NOT REPRODUCED")]


def test_a_measurement_needs_a_positive_and_a_negative_control(tmp_path):
    ctx = Context(P, tmp_path)
    for controls in ([], [positive("p", "REPRODUCED")], [negative("n", "INCONCLUSIVE")]):
        with pytest.raises(ValueError, match="positive and a negative"):
            finish(CLAIM, _measurement(controls), ctx)


def test_controls_are_decided_by_the_finisher(tmp_path):
    ctx = Context(P, tmp_path)
    assert finish(CLAIM, _measurement(OK), ctx).status == "REPRODUCED"
    v = finish(CLAIM, _measurement([positive("planted", "INCONCLUSIVE"), negative("n", "NOT REPRODUCED")]), ctx)
    assert v.status == CONTROL_FAILED and v.rule_status == "REPRODUCED" and "planted" in v.control_failure
    v = finish(CLAIM, _measurement(OK + [placebo("RL at the SFT rate", "REPRODUCED")], status="NOT REPRODUCED"), ctx)
    assert v.status == CONTROL_FAILED and "explained by update size" in v.control_failure
    v = finish(CLAIM, _measurement([positive("p", "REPRODUCED"), negative("null", "REPRODUCED")], status="INCONCLUSIVE"), ctx)
    assert v.status == CONTROL_FAILED and v.controls[1] == {"kind": "negative", "name": "null", "status": "REPRODUCED",
                                                            "holds": False}


def test_checks_read_pass_or_fail_and_claims_never_do(tmp_path):
    ctx = Context(P, tmp_path)
    v = finish(CHECK, _measurement([positive("p", "PASS"), negative("n", "FAIL")], status="PASS"), ctx)
    assert (v.status, v.kind) == ("PASS", "check")
    with pytest.raises(ValueError, match="check reads one of"):
        finish(CHECK, _measurement(OK), ctx)
    with pytest.raises(ValueError, match="claim reads one of"):
        finish(CLAIM, _measurement(OK, status="PASS"), ctx)


def test_qualifiers_reach_the_verdict_cell(tmp_path):
    ctx = Context(P, tmp_path)
    rule = AtLeast("x", 0.1, "a priori")
    edge = rule.decide(Interval.of([0.09, 0.11, 0.10, 0.105, 0.095]))
    wide = rule.decide(Interval.of([-0.5, 0.6, 0.2]))
    v = finish(CLAIM, _measurement(OK, status="INCONCLUSIVE", outcomes={"a": edge, "b": wide}, qualifiers=("vacuous",)), ctx)
    assert v.qualifiers == [AT_THE_EDGE, UNDERPOWERED, "vacuous"] and v.cell == "INCONCLUSIVE (at the edge, underpowered, vacuous)"
    assert v.outcomes["a"]["threshold"] == 0.1 and v.outcomes["a"]["source"] == "a priori"
    # 'underpowered' belongs to an undecided verdict only
    v = finish(CLAIM, _measurement(OK, status="NOT REPRODUCED", outcomes={"b": wide}), ctx)
    assert UNDERPOWERED not in v.qualifiers


def test_a_crashed_claim_reads_error_and_the_command_fails(tmp_path, monkeypatch):
    from verify import cli

    def crash(ctx, runs):
        raise FileNotFoundError("summary.json of run rl-x is missing")

    bad = Claim("gate9.crash", ("C0",), "t", "n", "r", lambda p: [], crash)
    (c, v, _), = cli.decide([bad], lambda cid: Context(P, tmp_path, claim_id=cid))
    assert v.status == ERROR and "summary.json of run rl-x" in v.error and v.headline.startswith("crashed:")
    with pytest.raises(ValueError):
        Verdict("x", "MAYBE", "h")


def test_finish_saves_figures_and_attaches_the_regime(tmp_path):
    ctx = Context(P, tmp_path)
    figs = [plt.subplots()[0], plt.subplots()[0]]
    v = finish(CLAIM, _measurement(OK, figs), ctx)
    assert v.figures == ["figures/gate9_test.png", "figures/gate9_test_2.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in v.figures)
    assert [(c["kind"], c["name"], c["status"]) for c in v.controls] == [("positive", "p", "REPRODUCED"),
                                                                        ("negative", "n", "NOT REPRODUCED")]
    assert len(v.runs) == 4  # the repeated run counts once
    assert v.regime["rl"]["runs"] == 3 and v.regime["rl"]["drift_ratio"] == 4.0 and v.regime["sft"]["drift_ratio"] == 30.0
    assert v.notes[0] == "a note" and any("Not at the matched point" in n and "rl seed 1" in n for n in v.notes)
    assert v.notes[-1].startswith("Regime of the runs used: rl: lr")
    json.dumps(v.to_json())  # the verdict is plain data


def test_stop_notes_read_matched_runs_only():
    notes = stop_notes([run_record(r) for r in RUNS])
    assert notes[0] == "rl runs stopped at [8, 12] steps, gains [0.9, 0.5]."
    assert notes[1] == "sft runs stopped at [10] steps, gains [0.95]."
    assert notes[2] == "Not at the matched point (target gain not reached, stopped at max_steps): rl seed 1."


def test_regime_record_and_summary():
    rec = run_record(RUNS[0])
    assert (rec["method"], rec["seed"], rec["steps"], rec["drift_ratio"], rec["walk_ratio"]) == ("rl", 0, 8, 2.0, None)
    s = regime_summary([run_record(r) for r in RUNS])
    assert list(s) == ["rl", "sft"] and s["rl"]["steps"] == 8.0 and s["rl"]["walk_ratio"] is None
    assert "step ratio 0.1" in regime_text(s) and "sft: lr 0.003" in regime_text(s)
    roles = regime_summary([run_record(RUNS[0], "rl"), run_record(RUNS[3], "placebo")])
    assert list(roles) == ["rl", "placebo"]  # a control never pools with the matched runs


def test_the_context_names_every_run_that_did_not_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path / "runs"))
    done, missing = P.rl(0), P.sft(1)
    d = run_dir("rl", done)
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"stopped_at": 3}))
    ctx = Context(P, tmp_path, claim_id="gate9.test")
    out = ctx.finished({"a": done, "b": [done]})
    assert out["a"].summary == {"stopped_at": 3} and out["b"][0] is out["a"]
    with pytest.raises(RunNotReady, match=r"gate9.test reads 1 run\(s\) that did not finish: sft-.*seed 1"):
        ctx.finished([done, missing])
