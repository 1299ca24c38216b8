"""The run store (toy_models/run_store.py): manifest, verified reads, quarantine, one writer per run across
processes, stale locks and partial folders, SIGTERM in a worker, files with the user's umask; and the pieces
of a resume that must keep every bit (0-d tensors, a metrics line cut short by a kill)."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from toy_models import run_store as RS
from toy_models.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint
from toy_models.config import ConfigError
from toy_models.runs import MetricsLog, read_metrics

REPO = Path(__file__).resolve().parents[2]


def _publish(directory: Path, files: dict[str, bytes]) -> Path:
    """A finished run made of ``files`` (relative path -> bytes), written the way every run is."""
    with RS.writing(directory) as w:
        assert w is not None
        for rel, data in files.items():
            (w.partial / rel).parent.mkdir(parents=True, exist_ok=True)
            (w.partial / rel).write_bytes(data)
        w.publish()
    return directory


FILES = {"summary.json": b'{"gain": 0.1}\n', "snapshots/final/params.safetensors": bytes(range(256)) * 8,
         "metrics.jsonl": b'{"step": 0}\n{"step": 1}\n'}


def test_a_published_run_has_a_manifest_of_every_file_and_passes_its_check(tmp_path):
    run = _publish(tmp_path / "rl-abc-def", FILES)
    assert not RS.partial_dir(run).exists()
    manifest = json.loads((run / RS.MANIFEST).read_text())["files"]
    assert sorted(manifest) == sorted(FILES)
    assert manifest["metrics.jsonl"]["size"] == len(FILES["metrics.jsonl"])
    assert RS.check_run(run) is None and RS.finished(run)


@pytest.mark.parametrize("damage,named", [
    ("truncate", "summary.json has 5 bytes where the manifest records 14"),
    ("flip", "snapshots/final/params.safetensors does not match its SHA-256"),
    ("delete", "metrics.jsonl is missing"),
    ("no_manifest", "manifest.json is missing"),
    ("bad_manifest", "manifest.json cannot be read"),
])
def test_each_kind_of_damage_is_named(tmp_path, damage, named):
    run = _publish(tmp_path / "rl-abc-def", FILES)
    if damage == "truncate":
        (run / "summary.json").write_bytes(FILES["summary.json"][:5])
    elif damage == "flip":
        path = run / "snapshots/final/params.safetensors"
        data = bytearray(path.read_bytes())
        data[1000] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "delete":
        (run / "metrics.jsonl").unlink()
    elif damage == "no_manifest":
        (run / RS.MANIFEST).unlink()
    else:
        (run / RS.MANIFEST).write_text("{\"files\": ")
    assert named in RS.check_run(run, "full")
    if damage == "flip":  # same size: only the content hash sees it
        assert RS.check_run(run, "sizes") is None


def test_a_damaged_run_is_quarantined_named_in_one_sentence_and_then_missing(tmp_path, capsys):
    run = _publish(tmp_path / "sft-abc-def", FILES)
    assert RS.finished(run)  # checked once, remembered
    (run / "summary.json").write_bytes(b"{")  # the remembered check does not hide a later change
    assert not RS.finished(run)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sft-abc-def" in err[0] and "summary.json" in err[0] and "quarantine" in err[0]
    assert not run.exists()
    (shelved,) = (tmp_path / RS.QUARANTINE).iterdir()
    assert shelved.name.startswith("sft-abc-def-") and shelved.name.endswith("Z")
    assert (shelved / RS.QUARANTINE_NOTE).read_text().strip() == err[0]
    assert (shelved / "metrics.jsonl").read_bytes() == FILES["metrics.jsonl"]
    assert not RS.finished(run)  # missing now: the caller trains it again


def test_verify_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(RS.VERIFY_ENV, "sizes")
    assert RS.verify_level() == "sizes"
    monkeypatch.setenv(RS.VERIFY_ENV, "fast")
    with pytest.raises(ConfigError, match=RS.VERIFY_ENV):
        RS.verify_level()


def test_a_failed_writer_leaves_nothing_and_keep_leaves_the_partial_folder(tmp_path):
    run = tmp_path / "rl-x-y"
    with pytest.raises(RuntimeError):
        with RS.writing(run) as w:
            (w.partial / "metrics.jsonl").write_text("{}\n")
            raise RuntimeError("out of memory")
    assert not run.exists() and not RS.partial_dir(run).exists()
    with RS.writing(run) as w:
        (w.partial / "checkpoint").mkdir()
        w.keep()
    assert RS.partial_dir(run).is_dir() and not run.exists()


def test_force_replaces_a_finished_run_only_when_the_new_one_is_complete(tmp_path):
    run = _publish(tmp_path / "rl-x-y", {"a.txt": b"old"})
    with RS.writing(run) as w:
        assert w is None  # finished: nothing to write
    with RS.writing(run, force=True) as w:
        w.clear()
        (w.partial / "a.txt").write_bytes(b"new")
        assert (run / "a.txt").read_bytes() == b"old"  # still readable while the new one is written
        w.publish()
    assert (run / "a.txt").read_bytes() == b"new" and RS.finished(run)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["rl-x-y"]


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from toy_models.interrupts import worker_signals
    from toy_models.run_store import writing
    if sys.argv[2] == "worker":
        worker_signals()
    with writing(Path(sys.argv[1])) as w:
        (w.partial / "started.txt").write_text("A")
        print("holding", flush=True)
        sys.stdin.readline()  # until the test says go (or kills this process)
        (w.partial / "data.txt").write_text("written by the first process")
        w.publish()
""")

READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from toy_models.run_store import finished, writing
    run = Path(sys.argv[1])
    if finished(run):
        print("cached")
    else:
        with writing(run) as w:
            if w is None:
                print("read")
            else:
                (w.partial / "data.txt").write_text("written by the second process")
                w.publish()
                print("built")
""")


def _python(code: str, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_a_second_process_waits_for_the_writer_and_reads_the_run_instead_of_writing_it(tmp_path):
    run = tmp_path / "rl-x-y"
    first = _python(HOLDER, run, "plain", stdin=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "holding"
        second = _python(READER, run)
        time.sleep(1.5)
        assert second.poll() is None, "the second process did not wait for the lock"
        first.stdin.write("go\n")
        first.stdin.flush()
        assert first.wait(30) == 0
        out, err = second.communicate(timeout=30)
    finally:
        first.kill()
    assert second.returncode == 0, err
    assert out.strip() == "read"
    assert f"waiting for another process (pid {first.pid} on " in err and "rl-x-y" in err
    assert (run / "data.txt").read_text() == "written by the first process" and RS.finished(run)


def test_a_killed_writer_leaves_no_lock_and_its_partial_folder_is_resumed_by_the_next(tmp_path):
    run = tmp_path / "rl-x-y"
    first = _python(HOLDER, run, "plain", stdin=subprocess.PIPE)
    assert first.stdout.readline().strip() == "holding"
    assert not RS.lock_is_free(run)
    assert RS.stale_partials(tmp_path) == []  # being written: not stale
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert RS.lock_is_free(run)
    assert RS.stale_partials(tmp_path) == [RS.partial_dir(run)]
    with RS.writing(run) as w:  # taken at once: the kernel released the dead holder's lock
        assert (w.partial / "started.txt").read_text() == "A"  # what the killed writer left, to resume from
        w.publish()
    assert RS.finished(run) and RS.stale_partials(tmp_path) == []


def test_a_worker_told_to_stop_removes_its_partial_folder_and_exits_143(tmp_path):
    run = tmp_path / "rl-x-y"
    worker = _python(HOLDER, run, "worker", stdin=subprocess.PIPE)
    assert worker.stdout.readline().strip() == "holding"
    assert RS.partial_dir(run).is_dir()
    worker.send_signal(signal.SIGINT)  # Ctrl-C is the driver's business: ignored
    time.sleep(0.5)
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 143
    assert not RS.partial_dir(run).exists() and not run.exists()
    assert "Traceback" not in worker.stderr.read()


def test_files_and_folders_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / "ck", {"w": np.ones(3, np.float32)}, {})
        run = _publish(tmp_path / "rl-x-y", {"sub/f.txt": b"x"})
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    for f in (tmp_path / "a.json", tmp_path / "ck" / "params.safetensors", tmp_path / "ck" / "meta.json",
              run / "sub" / "f.txt", run / RS.MANIFEST):
        assert mode(f) == 0o640, f
    for d in (run, run / "sub"):
        assert mode(d) == 0o750, d


def test_zero_dimensional_tensors_keep_their_shape_through_a_checkpoint(tmp_path):
    flat = {"count": np.array(7, np.int32), "ok": np.array(1.0, np.float32), "w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_checkpoint(tmp_path, flat, {})
    back, _ = load_checkpoint(tmp_path, {k: v.shape for k, v in flat.items()})
    assert {k: v.shape for k, v in back.items()} == {"count": (), "ok": (), "w": (2, 3)}
    assert back["count"].dtype == np.int32 and int(back["count"]) == 7


def test_resuming_metrics_keeps_records_up_to_the_step_and_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s / 3}) + "\n" for s in range(5)) + '{"step": 5, "x": 0.3')
    MetricsLog(path, truncate_after_step=3)
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2, 3]
    path.write_text(path.read_text() + '{"step": 4, "x"')
    MetricsLog(path, truncate_after_step=4)
    assert [r["step"] for r in read_metrics(path)] == [0, 1, 2, 3]
