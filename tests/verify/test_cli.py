"""verify: every claim runs on the tiny profile (planned, executed, decided: tests marked slow, run by CI's second
step), its controls flip the rule both ways, the report is written; bad targets are refused."""

import json
import subprocess
import sys
import time

import pytest

from verify.cli import run_claims
from verify.registry import PASS, REPRODUCED, STATUSES, load_all


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
        assert c["status"] in STATUSES, c["id"]
        assert not c["headline"].startswith("check failed"), (c["id"], c["headline"])
        assert c["numbers"], c["id"]
        assert c["figures"] and all((root / f).exists() for f in c["figures"]), c["id"]
    md = (root / "report.md").read_text()
    assert "| claim | verdict |" in md


@pytest.mark.slow
def test_controls_flip_the_decision_rule_both_ways(tiny_report):
    """Each claim's positive control comes out affirmative (REPRODUCED, PASS for a check) and its negative controls
    and placebos do not: the rule can flip."""
    for c in tiny_report["report"]["claims"]:
        kinds = {ctl["kind"] for ctl in c["controls"]}
        assert "positive" in kinds and kinds & {"negative", "placebo"}, f"{c['id']} lacks a positive or a negative control"
        for ctl in c["controls"]:
            assert (ctl["status"] in (REPRODUCED, PASS)) == (ctl["kind"] == "positive"), (c["id"], ctl)


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
