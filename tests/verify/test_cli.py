"""verify: every claim runs on the tiny profile (planned, executed, decided: tests marked slow, run by CI's second
step), its controls flip the rule both ways, the report is written; bad targets are refused."""

import json
import subprocess
import sys
import time

import pytest

from verify.cli import run_claims
from verify.registry import CONTROL_FAILED, STATUSES, load_all
from verify.rules import AFFIRMATIVE


@pytest.mark.slow
def test_every_registered_claim_but_the_sweeps_is_in_the_report(tiny_report):
    assert tiny_report["code"] == 0
    ids = [c["id"] for c in tiny_report["report"]["claims"]]
    assert ids == [c.id for c in load_all().values() if not c.sweep]
    assert len(ids) >= 4


@pytest.mark.slow
def test_every_claim_has_a_verdict_a_figure_and_numbers(tiny_report):
    root = tiny_report["root"] / "report"
    for c in tiny_report["report"]["claims"]:
        assert c["status"] in STATUSES + (CONTROL_FAILED,), c["id"]
        assert not c["headline"].startswith("check failed"), (c["id"], c["headline"])
        assert c["numbers"], c["id"]
        assert c["figures"] and all((root / f).exists() for f in c["figures"]), c["id"]
    md = (root / "report.md").read_text()
    assert "| claim | verdict |" in md


@pytest.mark.slow
def test_controls_flip_the_decision_rule_both_ways(tiny_report):
    """Each claim's positive control comes out affirmative (REPRODUCED or PASS) and its negative control does not: the
    rule can flip (the step-size placebo is a finding on tiny, not a test of the rule, so it is not asserted here)."""
    for c in tiny_report["report"]["claims"]:
        pos = [k for k in c["controls"] if k["kind"] == "positive"]
        neg = [k for k in c["controls"] if k["kind"] == "negative"]
        assert pos and neg, f"{c['id']} lacks a positive or a negative control"
        for k in pos:
            assert k["status"] in AFFIRMATIVE, (c["id"], k["name"], k["status"])
        for k in neg:
            assert k["status"] not in AFFIRMATIVE, (c["id"], k["name"], k["status"])


@pytest.mark.slow
def test_second_call_reuses_cached_runs(tiny_report):
    t0 = time.time()
    code = run_claims("gate3.sparsity", "tiny", str(tiny_report["root"] / "again"), quiet=True)
    assert code == 0
    assert time.time() - t0 < max(20.0, 0.5 * tiny_report["first_seconds"])
    again = json.loads((tiny_report["root"] / "again" / "report.json").read_text())
    first = next(c for c in tiny_report["report"]["claims"] if c["id"] == "gate3.sparsity")
    assert again["claims"][0]["numbers"] == first["numbers"]


def test_unknown_claim_and_profile_are_refused(capsys):
    assert run_claims("gate9.nothing", "tiny", None) == 2
    assert "Unknown claim" in capsys.readouterr().err
    assert run_claims("all", "huge", None) == 2
    assert "Unknown profile 'huge'" in capsys.readouterr().err


@pytest.mark.slow
def test_theory_command_exits_zero_and_prints_both_findings():
    proc = subprocess.run([sys.executable, "-m", "verify", "theory", "--scale", "0.3"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Wedin" in out and "half-ULP" in out and "Measured findings" in out
    assert "0 must-hold bounds violated" in out
