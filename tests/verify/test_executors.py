"""Executors: the same 4-run tiny plan run one after another, on 2 local worker processes and as Ray tasks on a
local 2-CPU cluster gives bit-identical run files and identical verdicts; the plan is gathered before anything
trains; a missing Ray extra is named in one sentence."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toy_models.runs import source_hash
from verify.plan import build_plan
from verify.profiles import get_profile
from verify.registry import load_all

CLAIM = "gate3.sparsity"  # 8 runs on tiny: RL, SFT, SFT at the RL rate, RL at the SFT rate; 2 seeds

SCRIPT = textwrap.dedent("""
    import json, os, sys
    def main():
        root, mode = sys.argv[1], sys.argv[2]
        os.environ["THREEGATE_RUNS"] = root
        os.environ["THREEGATE_JAX_CACHE"] = sys.argv[3]
        from verify.cli import run_claims
        kw = {"seq": dict(workers=1), "pool": dict(workers=2), "ray": dict(workers=1, executor="ray")}[mode]
        code = run_claims("%s", "tiny", os.path.join(root, "report"), quiet=True, **kw)
        sys.exit(code)
    if __name__ == "__main__":
        main()
""" % CLAIM)


def _execute(tmp_path: Path, mode: str) -> Path:
    root = tmp_path / mode
    script = tmp_path / "run_plan.py"
    script.write_text(SCRIPT)
    cache = str(Path(__file__).resolve().parents[2] / ".cache" / "jax")
    proc = subprocess.run([sys.executable, str(script), str(root), mode, cache], capture_output=True, text=True,
                          timeout=900, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root


def _fingerprint(root: Path) -> dict:
    """Bytes of every run's snapshots and its summary without wall time, per run directory."""
    out = {}
    for run in sorted(p for p in root.iterdir() if p.name.startswith(("rl-", "sft-"))):
        snaps = {s.name: (s / "params.safetensors").read_bytes() for s in sorted((run / "snapshots").iterdir())}
        summary = json.loads((run / "summary.json").read_text())
        summary.pop("seconds")
        out[run.name] = (snaps, summary, (run / "metrics.jsonl").read_text())
    return out


def _verdict(root: Path) -> dict:
    claim = json.loads((root / "report" / "report.json").read_text())["claims"][0]
    return {k: claim[k] for k in ("status", "headline", "numbers", "controls")}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    return _execute(tmp_path_factory.mktemp("executors"), "seq")


def test_the_plan_is_gathered_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path))
    claim = load_all()[CLAIM]
    plan = build_plan([claim], get_profile("tiny"))
    # RL, SFT, SFT at the RL rate (read at equal update size) and RL at the SFT rate (placebo), 2 seeds each
    assert len(plan.runs) == 8 and len(plan.missing_runs()) == 8 and len(plan.missing_bases()) == 1
    assert {s.train.method for s in plan.runs} == {"rl", "sft"}
    text = plan.render()
    assert "8 to run" in text and CLAIM in text and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_two_local_workers_give_the_sequential_bits(sequential, tmp_path):
    pool = _execute(tmp_path, "pool")
    seq_runs, pool_runs = _fingerprint(sequential), _fingerprint(pool)
    assert len(seq_runs) == 8 and seq_runs.keys() == pool_runs.keys()
    for name in seq_runs:
        assert seq_runs[name] == pool_runs[name], name
    assert _verdict(pool) == _verdict(sequential)
    assert all(name.split("-")[1] == source_hash() for name in seq_runs)


@pytest.mark.slow
def test_ray_tasks_give_the_sequential_bits(sequential, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    ray_root = _execute(tmp_path, "ray")
    assert _fingerprint(ray_root) == _fingerprint(sequential)
    assert _verdict(ray_root) == _verdict(sequential)


def test_missing_ray_extra_is_one_sentence(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path))
    from verify.cli import run_claims

    assert run_claims(CLAIM, "tiny", str(tmp_path / "r"), quiet=True, executor="ray") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: The ray executor needs the optional extra: pip install -e '.[ray]'."


def test_targets_all_sweeps_everything_gates_partition_the_registry():
    from verify.cli import choose

    claims = load_all()
    ids = lambda target: {c.id for c in choose(target)}
    sweeps = {c.id for c in claims.values() if c.sweep}
    assert {"regime.phase", "regime.width", "regime.optimizer"} <= sweeps
    assert ids("all") == set(claims) - sweeps and ids("sweeps") == sweeps and ids("everything") == set(claims)
    assert ids("gates") <= ids("all") and "gate3.sparsity" in ids("gates") and "regime.predictor" in ids("gates")
    assert not any(i.startswith(("consistency", "masked", "geometry")) for i in ids("gates"))
    assert ids("gate3.sparsity, regime.phase") == {"gate3.sparsity", "regime.phase"}


ORPHAN = textwrap.dedent("""
    import multiprocessing, os, time
    from concurrent.futures import ProcessPoolExecutor
    from verify.execute import exit_with_parent

    def init():
        exit_with_parent(poll_s=0.1)

    def worker_pid():
        return os.getpid()

    def sleep():
        time.sleep(60)

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init)
        print(pool.submit(worker_pid).result(), flush=True)
        pool.submit(sleep)
        time.sleep(60)
""")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_local_workers_end_when_the_driver_is_killed(tmp_path):
    """SIGKILL on the driver (no cleanup runs) still ends its pool worker within seconds."""
    import os
    import signal
    import time

    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        worker = int(driver.stdout.readline())
        os.kill(worker, 0)  # alive while the driver is
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.1)
        alive = _alive(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, f"worker {worker} outlived its killed driver by 10 s"
    finally:
        driver.kill()
