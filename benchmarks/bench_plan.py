"""What bounds `python -m verify all --profile quick` from empty caches: compile, training, deciding.

Runs the command once in a temporary folder (empty run and compilation caches) with JAX's compile log on,
then splits its wall time: training (the workers) and deciding (the driver, after the last run); the
workers' time into compiling (XLA compilation, tracing and lowering, by program) and the rest (training
steps, sampling included, evaluation, files); the driver's deciding time into compiling and the rest.
The RL step's own split into sampling and update is in bench_rl ("Sampling the step's completions alone").

    python benchmarks/bench_plan.py [--profile quick] [--workers 2] [--record]

Prints the table; ``--record`` also writes it into benchmarks/RESULTS.md and results_bench_plan.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_results  # this folder's helpers (the script's own folder is on the path)

ROOT = Path(__file__).resolve().parent.parent

COMPILE = re.compile(r"Finished (XLA compilation of|tracing|jaxpr to MLIR module conversion) (?:jit\()?([\w<>]+)\)?.* in ([0-9.]+) sec")
ITEM = re.compile(r"^\[(\d+)/(\d+)\] (.*): .*?(\d+) s$")


def compile_seconds(lines: list[str]) -> tuple[float, collections.Counter]:
    """Total compile-log seconds of these log lines, and the XLA compilation seconds by program."""
    total, by_program = 0.0, collections.Counter()
    for line in lines:
        m = COMPILE.search(line)
        if m:
            total += float(m.group(3))
            if m.group(1).startswith("XLA"):
                by_program[m.group(2)] += float(m.group(3))
    return total, by_program


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--record", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="threegate-plan-") as tmp:
        env = {**os.environ, "THREEGATE_RUNS": f"{tmp}/runs", "THREEGATE_JAX_CACHE": f"{tmp}/jax",
               "JAX_COMPILATION_CACHE_DIR": f"{tmp}/jax", "JAX_LOG_COMPILES": "1"}
        t = time.time()
        proc = subprocess.run([sys.executable, "-m", "verify", "all", "--profile", args.profile, "--workers",
                               str(args.workers), "--out", f"{tmp}/report"], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        wall = time.time() - t
        if proc.returncode != 0:
            sys.exit(f"verify failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        meta = json.loads(Path(f"{tmp}/report/report.json").read_text())["meta"]
    log = proc.stderr.splitlines()
    items = [i for i, line in enumerate(log) if ITEM.match(line)]
    last = items[-1] if items else 0
    worker_compile, worker_programs = compile_seconds(log[:last + 1])
    driver_compile, _ = compile_seconds(log[last + 1:])
    worker_seconds = sum(int(ITEM.match(log[i]).group(4)) for i in items)
    training, deciding = meta["seconds_training"], meta["seconds_deciding"]
    top = worker_programs.most_common(4)
    data = {"profile": args.profile, "workers": args.workers, "wall_s": wall, "report_s": meta["seconds"],
            "training_s": training, "deciding_s": deciding, "items": len(items), "worker_item_s": worker_seconds,
            "worker_compile_s": worker_compile, "worker_compile_by_program_s": dict(worker_programs),
            "driver_compile_s": driver_compile}
    pct = lambda part, whole: f"{100 * part / whole:.0f} %"  # noqa: E731
    lines = [f"## bench_plan ({args.profile}, --workers {args.workers})", "",
             f"`python -m verify all --profile {args.profile} --workers {args.workers}` from empty run and compilation "
             f"caches: **{meta['seconds']:.0f} s** ({wall:.0f} s with interpreter start), {len(items)} bases and runs.", "",
             "| part | seconds | share |", "|---|---|---|",
             f"| training (wall, {args.workers} workers) | {training:.0f} | {pct(training, meta['seconds'])} of the whole |",
             f"| deciding (driver, after the last run) | {deciding:.0f} | {pct(deciding, meta['seconds'])} of the whole |",
             f"| worker time, sum over bases and runs | {worker_seconds:.0f} | |",
             f"| of which compiling (XLA, tracing, lowering) | {worker_compile:.0f} | {pct(worker_compile, worker_seconds)} of worker time |",
             f"| of which the rest (steps incl. sampling, evaluation, files) | {worker_seconds - worker_compile:.0f} | "
             f"{pct(worker_seconds - worker_compile, worker_seconds)} of worker time |",
             f"| deciding: compiling | {driver_compile:.0f} | {pct(driver_compile, deciding)} of deciding |", "",
             "Largest XLA compilations in the workers (seconds, all compilations of the program): "
             + ", ".join(f"{name} {sec:.0f}" for name, sec in top) + "."]
    if args.record:
        write_results("bench_plan", "\n".join(lines), data)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
