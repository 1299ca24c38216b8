"""Resume equals uninterrupted, bit for bit, in every storage mode: one RL run is killed with SIGKILL at five
points in turn (right after a checkpoint, halfway through writing a metrics line, inside a segment, right
after the checkpoint at the last step, after the final snapshot but before summary.json), each time rerun in
a fresh process that resumes from what the killed one left, and the finished run is compared file by file
with an uninterrupted run: parameters of every snapshot, metrics, config, summary (but its wall time)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.run_files import run_files
from toy_models.run_store import finished, partial_dir

REPO = Path(__file__).resolve().parents[2]

SPEC = ["train.max_steps=6", "train.eval_every=3", "train.eval_problems=8", "train.probe_size=8",
        "train.pool_per_task=32", "rl.prompts_per_step=4", "rl.num_generations=4", "train.checkpoint_every=2",
        "train.snapshot_steps=3,5", "base.train.steps=40", "base.corpus.n_examples=256", "base.train.eval_problems=8",
        "base.train.chunk=20"]  # segments end at 2, 3, 4, 5, 6; checkpoints at 2, 4, 6 (the last step)

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import toy_models.finetune as F

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    point, spec = sys.argv[1], F.run_preset("grpo_kl", "tiny", sys.argv[2:])
    kind, _, n = point.partition(":")
    segments = []
    counted_segment = F.train_segment
    def count(*args):
        segments.append(args[6])
        return counted_segment(*args)
    F.train_segment = count
    if kind == "checkpoint":  # right after the resume checkpoint of step n is written
        real_save = F._save_resume
        def save(directory, step, state, meta):
            real_save(directory, step, state, meta)
            if step == int(n):
                die()
        F._save_resume = save
    elif kind == "segment":  # inside the segment that ends at step n: computed, nothing of it written
        real_segment = F.train_segment
        def segment(st, state, data, hyper, run_key, data_key, start, count, length):
            out = real_segment(st, state, data, hyper, run_key, data_key, start, count, length)
            if int(start) + int(count) == int(n):
                die()
            return out
        F.train_segment = segment
    elif kind == "metrics":  # halfway through writing the metrics record of step n
        real_write = F.MetricsLog.write
        def write(self, record):
            if record.get("step") == int(n):
                text = json.dumps(record, sort_keys=True)
                with open(self.path, "a") as f:
                    f.write(text[: len(text) // 2])
                die()
            real_write(self, record)
        F.MetricsLog.write = write
    elif kind == "summary":  # after the final snapshot, before summary.json
        real_json = F.atomic_write_json
        def write_json(path, obj):
            if Path(path).name == "summary.json":
                die()
            real_json(path, obj)
        F.atomic_write_json = write_json
    run = F.finetune(spec)
    print(f"segments {len(segments)}")
    print(run.directory)
""")

KILL_POINTS = ["checkpoint:2", "metrics:3", "segment:4", "checkpoint:6", "summary"]


def _run(root: Path, point: str, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "THREEGATE_RUNS": str(root), "JAX_COMPILATION_CACHE_DIR": str(REPO / ".cache" / "jax"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}
    return subprocess.run([sys.executable, "-c", SCRIPT, point, *SPEC, f"train.precision={mode}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # 7 processes per mode, each starting JAX and training a 6-step run of the tiny model
@pytest.mark.parametrize("mode", ["fp32", "bf16", "fp32_master"])
def test_a_run_killed_at_five_points_and_rerun_is_bit_identical_to_an_uninterrupted_one(tmp_path, mode):
    whole = _run(tmp_path / "whole", "none", mode)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = Path(whole.stdout.strip().splitlines()[-1])
    assert whole.stdout.strip().splitlines()[-2] == "segments 5"
    root = tmp_path / "killed"
    for point in KILL_POINTS:
        proc = _run(root, point, mode)
        assert proc.returncode == -9, f"{point}: the kill point was not reached (exit {proc.returncode}) {proc.stderr[-2000:]}"
        (partial,) = [p for p in root.iterdir() if p.name.startswith("rl-")]
        assert partial.name.endswith(".partial"), f"{point}: a killed run must not look finished"
    meta = json.loads((partial / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 6  # the last kill left a checkpoint at the last step: the rerun resumes from there
    again = _run(root, "none", mode)
    assert again.returncode == 0, again.stderr[-3000:]
    *_, segments, where = again.stdout.strip().splitlines()
    assert segments == "segments 0"  # resumed at the last step: nothing trained again
    run = Path(where)
    assert run.name == reference.name and finished(run) and not partial_dir(run).exists()
    got, want = run_files(run), run_files(reference)
    assert sorted(got) == sorted(want)
    for rel in want:
        assert got[rel] == want[rel], rel
    summary = got["summary.json"]
    assert summary["stopped_at"] == 6 and summary["kl_to_base_final"] > 0
    metrics = [json.loads(line) for line in got["metrics.jsonl"].decode().splitlines()]
    assert [r["step"] for r in metrics] == list(range(7))  # one record per step: none lost, none twice
    assert summary["kl_to_base_final"] == metrics[-1]["kl/to_base_exact"]  # recomputed from the final parameters
