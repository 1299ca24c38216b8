"""Shared benchmark helpers: timing medians, the machine description, atomic result files."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import time
from datetime import date
from pathlib import Path

import jax

HERE = Path(__file__).parent
RESULTS_MD = HERE / "RESULTS.md"


def median_seconds(fn, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` (which must block until done) over ``repeats`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    """One line: CPU model, cores, jax version and backend, date."""
    model = "unknown CPU"
    try:
        m = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = m.group(1).strip() if m else model
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, jax {jax.__version__} "
            f"({jax.default_backend()}), {date.today().isoformat()}")


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def live_buffer_mib() -> float:
    """Bytes held by live jax arrays right now (MiB); the CPU backend has no device memory_stats."""
    return sum(x.nbytes for x in jax.live_arrays()) / 2**20


def matmul_peak_gflops(sizes=(512, 1024, 2048), repeats: int = 5) -> dict:
    """Best median float32 matmul throughput (GFLOP/s) over square sizes, measured now on this machine."""
    import jax.numpy as jnp

    out = {}
    f = jax.jit(jnp.dot)
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        sec = median_seconds(lambda: f(a, b).block_until_ready(), repeats)
        out[n] = 2 * n**3 / sec / 1e9
    return {"by_size": out, "peak": max(out.values())}


def write_results(name: str, markdown: str, data: dict) -> None:
    """Replace this script's section of RESULTS.md and write results_<name>.json, both atomically."""
    data = {"machine": machine(), **data}
    tmp = HERE / f".results_{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, HERE / f"results_{name}.json")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n\nWritten by the scripts in this folder; rerun them to refresh.\n"
    section = f"{begin}\n{markdown.strip()}\n\nMachine: {data['machine']}.\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = HERE / ".RESULTS.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, RESULTS_MD)
