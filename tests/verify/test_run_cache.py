"""The run cache under faults, end to end on the tiny profile (gate3.sparsity: one base and eight runs, namely RL, SFT, SFT at
the RL rate and RL at the SFT rate for two seeds):

- two `verify` processes started together on one empty cache give the run files and the verdict of one
  process, with one metrics record per step (no run trained twice);
- a truncated, a byte-flipped and a missing file in cached runs (and a flipped byte in the base) are each
  named in one sentence, quarantined and trained again, and the report equals the clean one;
- one claim run into the folder of a fuller report is refused before anything trains."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_files import run_files
from toy_models.run_store import QUARANTINE, QUARANTINE_NOTE, finished

REPO = Path(__file__).resolve().parents[2]
CLAIM = "gate3.sparsity"


def _verify(root: Path, out: str, *extra: str, wait: bool = True):
    env = {**os.environ, "THREEGATE_RUNS": str(root / "runs"), "JAX_COMPILATION_CACHE_DIR": str(REPO / ".cache" / "jax"),
           "THREEGATE_JAX_CACHE": str(REPO / ".cache" / "jax")}
    cmd = [sys.executable, "-m", "verify", CLAIM, "--profile", "tiny", "--workers", "1", "--out", str(root / out), *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out_text, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return out_text, err


def _fingerprint(runs: Path) -> dict:
    """The files of every finished run and base (``tests.run_files``), by run folder."""
    return {run.name: run_files(run) for run in sorted(runs.iterdir()) if run.name.startswith(("base-", "rl-", "sft-"))}


def _verdict(report: Path) -> dict:
    claim = json.loads((report / "report.json").read_text())["claims"][0]
    return {k: claim[k] for k in ("status", "headline", "numbers", "controls", "notes")}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    _verify(root, "report", "--quiet")
    return root


@pytest.mark.slow
def test_two_processes_on_one_cache_give_the_files_and_report_of_one(single, tmp_path):
    first, second = (_verify(tmp_path, name, wait=False) for name in ("r1", "r2"))
    errs = []
    for proc in (first, second):
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        errs.append(err)
    runs = _fingerprint(tmp_path / "runs")
    assert runs == _fingerprint(single / "runs") and len(runs) == 9
    for name, files in runs.items():
        if not name.startswith("base-"):
            steps = [json.loads(line)["step"] for line in files["metrics.jsonl"].decode().splitlines()]
            assert steps == list(range(len(steps))), name  # one record per step
    assert _verdict(tmp_path / "r1") == _verdict(tmp_path / "r2") == _verdict(single / "report")
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.endswith(".partial")]
    print("waiting lines:", [line for err in errs for line in err.splitlines() if "waiting for another process" in line])


@pytest.mark.slow
def test_damaged_cached_runs_are_named_quarantined_and_trained_again(single, tmp_path):
    shutil.copytree(single / "runs", tmp_path / "runs")
    runs = tmp_path / "runs"
    rl = sorted(p for p in runs.iterdir() if p.name.startswith("rl-") and p.is_dir())
    sft = sorted(p for p in runs.iterdir() if p.name.startswith("sft-") and p.is_dir())
    (base,) = [p for p in runs.iterdir() if p.name.startswith("base-")]
    summary = rl[0] / "summary.json"
    summary.write_bytes(summary.read_bytes()[:40])  # truncated
    for path in (sft[0] / "snapshots" / "final" / "params.safetensors", base / "checkpoint" / "params.safetensors"):
        data = bytearray(path.read_bytes())
        data[-9] ^= 0x10  # a flipped bit in the tensor data, same size
        path.write_bytes(bytes(data))
    (rl[1] / "metrics.jsonl").unlink()  # missing
    damaged = {rl[0].name: "summary.json", sft[0].name: "snapshots/final/params.safetensors",
               base.name: "checkpoint/params.safetensors", rl[1].name: "metrics.jsonl"}

    _, err = _verify(tmp_path, "report", "--quiet")
    sentences = [line for line in err.splitlines() if line.startswith("Cached run ")]
    assert len(sentences) == len(damaged), err[-3000:]
    for name, file in damaged.items():
        (sentence,) = [s for s in sentences if s.startswith(f"Cached run {name} ")]
        assert file in sentence and "quarantine" in sentence
    shelved = {p.name.rsplit("-", 1)[0]: p for p in (runs / QUARANTINE).iterdir()}
    assert set(shelved) == set(damaged)
    assert all((p / QUARANTINE_NOTE).exists() for p in shelved.values())
    assert all(finished(runs / name) for name in damaged)  # trained again
    assert _fingerprint(runs) == _fingerprint(single / "runs")
    assert _verdict(tmp_path / "report") == _verdict(single / "report")


@pytest.mark.slow
def test_one_claim_into_a_fuller_reports_folder_is_refused_and_leaves_it_alone(single, tmp_path):
    shutil.copytree(single / "report", tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    report["claims"].append({**report["claims"][0], "id": "gate1.leash"})  # as if written by a larger target
    (tmp_path / "report" / "report.json").write_text(json.dumps(report))
    before = {p: p.read_bytes() for p in (tmp_path / "report").rglob("*") if p.is_file()}
    env = {**os.environ, "THREEGATE_RUNS": str(single / "runs")}
    proc = subprocess.run([sys.executable, "-m", "verify", CLAIM, "--profile", "tiny", "--out", str(tmp_path / "report")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "gate1.leash" in lines[0] and "choose another --out" in lines[0]
    assert {p: p.read_bytes() for p in (tmp_path / "report").rglob("*") if p.is_file()} == before
