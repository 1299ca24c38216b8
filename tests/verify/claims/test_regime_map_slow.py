"""The regime map's sweeps end to end on the tiny profile (verify/claims/regime_map.py): regime.phase, regime.width
and regime.optimizer train their runs, decide by their rules, draw their figures and record controls that hold."""

import json

import pytest

from verify.cli import run_claims
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

CLAIMS = ("regime.phase", "regime.width", "regime.optimizer")
FIGURES = {"regime.phase": 7, "regime.width": 1, "regime.optimizer": 1}  # phase: one per metric


@pytest.mark.slow
def test_regime_sweeps_run_on_tiny_and_their_controls_hold(session_runs, tmp_path):
    out = tmp_path / "report"
    assert run_claims(",".join(CLAIMS), "tiny", str(out), quiet=True, workers=1) == 0
    by_id = {c["id"]: c for c in json.loads((out / "report.json").read_text())["claims"]}
    assert set(by_id) == set(CLAIMS)
    for cid, c in by_id.items():
        assert c["status"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE), (cid, c["status"], c["notes"][:1])
        assert len(c["figures"]) == FIGURES[cid] and all((out / f).stat().st_size > 10_000 for f in c["figures"])
        assert {k["kind"] for k in c["controls"]} == {"positive", "negative"} and all(k["holds"] for k in c["controls"])
        assert c["outcomes"] and all(o["kind"] == "floor" and o["source"] == "a priori" for o in c["outcomes"].values())
    phase = by_id["regime.phase"]
    assert set(phase["outcomes"]) == {"sparsity: RL - SFT at matched drift ratio"}
    assert len(phase["descriptive"]) == 13  # six other metrics' presence, seven 'explained by regime'
    assert set(by_id["regime.optimizer"]["outcomes"]) == {"AdamW: RL - SFT sparsity", "SGD: RL - SFT sparsity"}
    assert by_id["regime.width"]["numbers"]["sparsity_slope_per_doubling"]["df"] == 2  # 2 widths x 2 seeds on tiny
