"""The finisher (verify/finish.py) and the regime record (verify/regime_record.py): a measurement without both
kinds of control is refused, figures are saved under the claim's id, stop notes name the runs that missed the
matched point, and every run's regime numbers and their per-method medians travel with the verdict. The run
lookup of the Context names every run that did not finish."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from toy_models.runs import run_dir
from verify.finish import finish, stop_notes
from verify.profiles import get_profile
from verify.regime_record import regime_summary, regime_text, run_record
from verify.registry import Claim, Measurement, negative, positive
from verify.runs import Context, RunNotReady

P = get_profile("tiny")
CLAIM = Claim("gate9.test", ("C0",), "a test claim", "none", "a rule", lambda p: [], lambda ctx, runs: None)


class _Run:
    """What the finisher reads of a finished run: its spec, folder and summary."""

    def __init__(self, spec, steps, reason, gain, drift):
        self.spec, self.directory = spec, Path(f"/runs/{spec.train.method}-{spec.train.seed}-{spec.train.lr:g}")
        self.summary = {"stopped_at": steps, "reason": reason, "gain": gain, "kl_to_base_final": 0.1,
                        "regime": {"step_ratio": 0.1, "drift_ratio": drift}}


RUNS = [_Run(P.rl(0), 8, "target_gain", 0.9, 2.0), _Run(P.rl(1), 12, "max_steps", 0.5, 4.0),
        _Run(P.sft(0), 10, "target_gain", 0.95, 30.0), _Run(P.rl(0, lr=1e-2, steps=4, matched=False), 4, "max_steps", 0.1, 90.0)]


def _measurement(controls, figures=()):
    return Measurement("REPRODUCED", "headline", {"x": 1.0}, controls, list(figures), RUNS + RUNS[:1], ["a note"])


def test_a_measurement_needs_a_positive_and_a_negative_control(tmp_path):
    ctx = Context(P, tmp_path)
    for controls in ([], [positive("p", "REPRODUCED")], [negative("n", "INCONCLUSIVE")]):
        with pytest.raises(ValueError, match="positive and one negative"):
            finish(CLAIM, _measurement(controls), ctx)


def test_finish_saves_figures_and_attaches_the_regime(tmp_path):
    ctx = Context(P, tmp_path)
    figs = [plt.subplots()[0], plt.subplots()[0]]
    v = finish(CLAIM, _measurement([positive("p", "REPRODUCED"), negative("n", "NOT REPRODUCED")], figs), ctx)
    assert v.figures == ["figures/gate9_test.png", "figures/gate9_test_2.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in v.figures)
    assert v.controls == {"positive: p": "REPRODUCED", "negative: n": "NOT REPRODUCED"}
    assert len(v.runs) == 4  # the repeated run counts once
    assert v.regime["rl"]["runs"] == 3 and v.regime["rl"]["drift_ratio"] == 4.0 and v.regime["sft"]["drift_ratio"] == 30.0
    assert v.notes[0] == "a note" and any("Not at the matched point" in n and "rl seed 1" in n for n in v.notes)
    assert v.notes[-1].startswith("Regime of the runs used: rl: lr")
    json.dumps(v.to_json())  # the verdict is plain data


def test_stop_notes_read_matched_runs_only():
    notes = stop_notes(RUNS)
    assert notes[0] == "rl runs stopped at [8, 12] steps, gains [0.9, 0.5]."
    assert notes[1] == "sft runs stopped at [10] steps, gains [0.95]."
    assert notes[2] == "Not at the matched point (target gain not reached, stopped at max_steps): rl seed 1."


def test_regime_record_and_summary():
    rec = run_record(RUNS[0])
    assert (rec["method"], rec["seed"], rec["steps"], rec["drift_ratio"], rec["walk_ratio"]) == ("rl", 0, 8, 2.0, None)
    s = regime_summary([run_record(r) for r in RUNS])
    assert list(s) == ["rl", "sft"] and s["rl"]["steps"] == 8.0 and s["rl"]["walk_ratio"] is None
    assert "walk ratio ?" in regime_text(s) and "sft: lr 0.003" in regime_text(s)


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
