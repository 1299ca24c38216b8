"""Signals on `python -m verify`: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM
stop the workers, keep finished runs, remove unfinished ones, print one line and exit 130 / 143; after
SIGKILL on the driver, no process it started (workers, the resource tracker) outlives it. Checked on the
process table (/proc)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toy_models.run_store import PARTIAL_SUFFIX, finished

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return None
    return int(fields[1]), fields[0]


def _descendants(root: int) -> set[int]:
    """Every live process below ``root`` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _ppid_and_state(int(entry.name))) is not None:
            children.setdefault(info[0], []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    info = _ppid_and_state(pid)
    return info is not None and info[1] != "Z"


def _start(tmp_path: Path, quiet: bool) -> tuple[subprocess.Popen, Path]:
    runs = tmp_path / "runs"
    env = {**os.environ, "THREEGATE_RUNS": str(runs), "JAX_COMPILATION_CACHE_DIR": str(REPO / ".cache" / "jax"),
           "THREEGATE_JAX_CACHE": str(REPO / ".cache" / "jax")}
    cmd = [sys.executable, "-m", "verify", "gate3.sparsity", "--profile", "tiny", "--workers", "2",
           "--out", str(tmp_path / "report"), *(["--quiet"] if quiet else [])]
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # its own process group, as a shell job
    return driver, runs


def _wait_for_training(driver: subprocess.Popen, runs: Path, timeout: float = 300) -> set[int]:
    """Wait until a fine-tuning run is being written (its partial folder exists); the driver's processes then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise AssertionError(f"verify ended before training (exit {driver.returncode}): {driver.stderr.read()[-2000:]}")
        if runs.is_dir() and any(p.name.startswith(("rl-", "sft-")) and p.name.endswith(PARTIAL_SUFFIX) for p in runs.iterdir()):
            procs = _descendants(driver.pid)
            if len(procs) >= 2:  # the workers and the resource tracker are up
                return procs
        time.sleep(0.05)
    raise AssertionError("no fine-tuning run started within the timeout")


def _gone(pids: set[int], seconds: float = 10) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = {p for p in pids if _alive(p)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


@pytest.mark.slow
@pytest.mark.parametrize("how,status", [("sigint", 130), ("sigterm", 143)])
def test_ctrl_c_and_sigterm_stop_workers_keep_finished_runs_and_print_one_line(tmp_path, how, status):
    driver, runs = _start(tmp_path, quiet=True)
    try:
        procs = _wait_for_training(driver, runs)
        if how == "sigint":
            os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == status, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err[-3000:]
    assert _gone(procs) == set(), "processes outlived the interrupted driver"
    assert not [p.name for p in runs.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]  # unfinished runs removed
    kept = [p for p in runs.iterdir() if p.name.startswith(("base-", "rl-", "sft-"))]
    assert kept and all(finished(p) for p in kept)  # the base (at least) finished and is intact


@pytest.mark.slow
def test_no_process_outlives_a_killed_driver(tmp_path):
    driver, runs = _start(tmp_path, quiet=False)  # progress relayed from the workers: the event queue is in use
    try:
        procs = _wait_for_training(driver, runs)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        driver.kill()
    assert _gone(procs) == set(), "processes outlived the driver killed with SIGKILL"
