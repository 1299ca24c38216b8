"""Outputs never clobber what they did not write: the report folder of each target, a foreign or larger report
refused, an unwritable --out refused in one sentence within seconds and before anything trains; report
files get the user's umask; `verify theory --scale` must be a positive finite number."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toy_models.config import ConfigError
from verify.report_folder import default_out, prepare_out

REPO = Path(__file__).resolve().parents[2]


def test_only_all_writes_the_profiles_report_folder():
    assert default_out("all", "quick") == Path("reports/quick")
    assert default_out("gate3.sparsity", "quick") == Path("reports/quick/gate3.sparsity")
    assert default_out("gate3.sparsity, gate1.leash", "tiny") == Path("reports/tiny/gate3.sparsity+gate1.leash")
    assert default_out("sweeps", "quick") == Path("reports/quick/sweeps")


def _report(folder: Path, profile: str, ids: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps({"profile": profile, "claims": [{"id": i} for i in ids]}))


def test_a_report_is_replaced_only_by_one_of_the_same_profile_with_all_its_claims(tmp_path):
    _report(tmp_path / "r", "quick", ["gate1.leash", "gate3.sparsity"])
    prepare_out(tmp_path / "r", "quick", ["gate1.leash", "gate3.sparsity", "gate2.bounds"])  # a superset: fine
    with pytest.raises(ConfigError, match=r"claims this run lacks \(gate1\.leash\)"):
        prepare_out(tmp_path / "r", "quick", ["gate3.sparsity"])
    with pytest.raises(ConfigError, match="profile 'quick'"):
        prepare_out(tmp_path / "r", "tiny", ["gate1.leash", "gate3.sparsity"])
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "report.md").write_text("# my notes\n")
    with pytest.raises(ConfigError, match="report.md this suite did not write"):
        prepare_out(tmp_path / "own", "quick", ["gate3.sparsity"])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "report.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="report.json this suite did not write"):
        prepare_out(tmp_path / "odd", "quick", ["gate3.sparsity"])
    prepare_out(tmp_path / "new" / "deeper", "quick", ["gate3.sparsity"])  # created when missing
    assert (tmp_path / "new" / "deeper").is_dir()


def test_an_unwritable_out_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        prepare_out(tmp_path / "file" / "report", "tiny", ["gate3.sparsity"])
    if os.geteuid() != 0:  # root writes through permission bits
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="is not writable"):
            prepare_out(tmp_path / "ro", "tiny", ["gate3.sparsity"])


@pytest.mark.slow  # timed: run in CI's serial slow step, not beside other xdist workers
def test_verify_with_an_unwritable_out_fails_within_5_s_before_any_training(tmp_path):
    (tmp_path / "file").write_text("x")
    env = {**os.environ, "THREEGATE_RUNS": str(tmp_path / "runs"), "THREEGATE_JAX_CACHE": str(tmp_path / "jax")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "verify", "gate3.sparsity", "--profile", "tiny", "--out",
                           str(tmp_path / "file" / "report")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Report folder ") and "cannot be created" in lines[0]
    assert seconds < 5, f"took {seconds:.1f} s"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("scale", ["nan", "0", "-1", "inf"])
def test_theory_scale_must_be_positive_and_finite(scale):
    proc = subprocess.run([sys.executable, "-m", "verify", "theory", "--scale", scale], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: Option `--scale` must be a positive finite number, got {float(scale)}."]


def test_report_files_get_the_users_umask(tmp_path):
    from verify.report import write_report

    old = os.umask(0o027)
    try:
        md = write_report(tmp_path / "r", "tiny", [], {"seeds": [0]})
    finally:
        os.umask(old)
    for f in (md, tmp_path / "r" / "report.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o750
