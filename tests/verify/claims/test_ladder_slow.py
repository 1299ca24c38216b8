"""regime.ladder end to end on the tiny profile's rungs (slow tier): bases of three rungs from two seeds each, one RL
run per base at the rate the trainer derives from that base, the claim decided with its controls and its report
section; and the GPU script's CPU smoke test (benchmarks/bench_ladder_gpu.py --smoke)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toy_models.finetune import finetune
from toy_models.optim import lr_for_step_ratio, median_abs_weight
from toy_models.pretrain import pretrain
from toy_models.storage import round_tree_bf16
from toy_models.transformer import flat_params
from verify.cli import run_claims
from verify.experiments.ladder import ladder
from verify.profiles import get_profile
from verify.registry import CONTROL_FAILED, STATUSES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def test_ladder_runs_end_to_end_on_tiny_rungs(session_runs, tmp_path):
    p = get_profile("tiny")
    assert run_claims("regime.ladder", "tiny", str(tmp_path / "report"), quiet=True) == 0
    v = json.loads((tmp_path / "report" / "report.json").read_text())["claims"][0]
    assert v["id"] == "regime.ladder" and (v["status"] in STATUSES or v["status"] == CONTROL_FAILED)
    assert {c["kind"]: c["holds"] for c in v["controls"]} == {"positive": True, "negative": True}
    rungs = v["numbers"]["rungs"]
    assert sorted(rungs) == sorted(r.name for r in p.ladder_grid.rungs)
    for t in rungs.values():
        assert t["bases"] == 2 and t["pass8"]["mean"] >= t["pass1"]["mean"]
    assert "## The regime ladder" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "figures" / "regime_ladder.png").exists()
    # every run's rate is the rlvr rule on its own base's median |w| (bases of different widths differ)
    for specs in ladder(p).values():
        for spec in specs:
            m = median_abs_weight(flat_params(round_tree_bf16(pretrain(spec.base).params)))
            assert finetune(spec).regime["lr"] == pytest.approx(lr_for_step_ratio(m, p.ladder_grid.step_ratio))


def test_gpu_script_smoke_test_on_the_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ladder_gpu.py"), "--smoke", "--runs",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| w16-d1-c50 | 0 |" in proc.stdout and "| published rl | 0 |" in proc.stdout
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ladder_gpu.py")], capture_output=True,
                             text=True, timeout=300, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert refused.returncode == 2 and "no GPU" in refused.stderr
