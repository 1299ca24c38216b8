"""The adapter claims end to end on the tiny profile (verify/claims/adapters.py, C15 and C16): both sweep claims train
their grid from a fresh run cache, decide, write their figures, and record controls that flip the decision."""

import json

import pytest

from verify.cli import run_claims
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

CLAIMS = ("adapters.grid", "adapters.approximation")
FIGURES = {"adapters.grid": 5, "adapters.approximation": 2}  # grid: RL gain, collapse map, PiSSA - LoRA, geometry, SFT gain


@pytest.mark.slow
def test_adapter_claims_run_on_tiny_and_their_controls_flip(session_runs, tmp_path):
    out = tmp_path / "report"
    code = run_claims(",".join(CLAIMS), "tiny", str(out), quiet=True, workers=1)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    by_id = {c["id"]: c for c in report["claims"]}
    assert set(by_id) == set(CLAIMS)
    for cid, c in by_id.items():
        assert c["status"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE), (cid, c["status"])
        assert not c["headline"].startswith("check failed"), c["headline"]
        assert len(c["figures"]) == FIGURES[cid]
        for f in c["figures"]:
            assert (out / f).stat().st_size > 10_000, f  # a drawn png, not an empty canvas
        pos = [k for k in c["controls"] if k["kind"] == "positive"]
        neg = [k for k in c["controls"] if k["kind"] == "negative"]
        assert pos and neg, f"{cid} lacks a positive or a negative control"
        assert all(k["status"] == REPRODUCED and k["holds"] for k in pos), (cid, pos)
        assert all(k["status"] != REPRODUCED and k["holds"] for k in neg), (cid, neg)
        assert c["outcomes"] and all(o["source"].startswith("a priori") for o in c["outcomes"].values())
    assert set(by_id["adapters.grid"]["outcomes"]) == {"no gain over LoRA", "PiSSA collapses at a lower rate"}
    assert by_id["adapters.grid"]["outcomes"]["PiSSA collapses at a lower rate"]["kind"] == "test"
    grid = by_id["adapters.grid"]["numbers"]
    assert grid["ranks"] == "1, 2"
    # the tiny grid's top rate (0.1) is where adapters collapse: the collapse map has something to show
    assert any(v != "0/2" for k, v in grid.items() if k.startswith("rl/") and k.endswith("/collapsed"))
    assert "lora_r2_minus_full_gain" in by_id["adapters.approximation"]["numbers"]
