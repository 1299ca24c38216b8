"""Wall time and peak memory of ``verify pair`` on a synthetic pair with the shapes of a 1.5B decoder.

The pair has the tensor names and shapes of a Qwen2-1.5B-style decoder (DS-R1-Distill-Qwen-1.5B):
28 layers, d_model 1536, MLP 8960, 12 query and 2 key/value heads of 128 (k_proj / v_proj 256 x 1536,
with q/k/v biases), vocabulary 151,936 (embed_tokens and an untied lm_head), RMS norms; bf16; sharded
with ``model.safetensors.index.json``. Weights are Gaussian plus a few low-rank spikes (so spectra have
outliers); the tuned checkpoint moves a planted share of the coordinates of every tensor by exactly one
bf16 ULP (bit pattern + 1), so the expected sparsity is known and checked.

Measured side by side, each in its own subprocess: reading both checkpoints once from start to end
(``readinto`` in 16 MiB blocks, one process: the physical limit of a sparsity job) and ``verify pair
--sparsity-only`` (changed share per tensor, no SVD), alternated ``--repeats`` times (both take about a second,
so single samples are noisy: medians are compared), a last reading, then ``verify pair`` with every analysis
(nulls, energy sweep, dW structure). Memory: the peak over time of the summed resident memory of
the analyzer's process tree (the CLI and its worker processes, memory maps included), sampled every 20 ms,
above the same tree's peak on a one-tensor pair with the same number of workers (imports, JAX, the pool).
Goals (issue 21): the full analysis under 6 minutes on 2 cores, the sparsity-only run within 1.5 x the
reading, peak above baseline at most 2 x the largest tensor in float32.

The pair goes to a temporary folder outside the repository ($TMPDIR or /tmp, about 2 x 3.5 GB for 28
layers), deleted afterwards unless ``--keep``. Results go to ``benchmarks/RESULTS.md`` and
``results_analyzer.json`` only with ``--record``; without it this prints them and writes nothing tracked.

    python benchmarks/analyzer.py [--layers N] [--repeats R] [--keep] [--pair DIR] [--record]
    python benchmarks/analyzer.py --layers 2 --generate      # only write a synthetic pair and print its folders
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np

from verify.realckpt.layout import save_safetensors, write_sharded

D, FF, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 1536, 8960, 151_936, 12, 2, 128
SHARE = 0.4  # planted share of coordinates moved by one ULP
BF16 = ml_dtypes.bfloat16
SHARD_BYTES = 2 * 2**30
ROOT = Path(__file__).resolve().parent.parent


def specs(layers: int) -> list[tuple[str, tuple, object]]:
    """(name, shape, dtype) of every tensor of the synthetic decoder, in file order."""
    kv = KV_HEADS * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, D), BF16)]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (D,), BF16),
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, D), BF16), (p + "self_attn.q_proj.bias", (HEADS * HEAD_DIM,), BF16),
            (p + "self_attn.k_proj.weight", (kv, D), BF16), (p + "self_attn.k_proj.bias", (kv,), BF16),
            (p + "self_attn.v_proj.weight", (kv, D), BF16), (p + "self_attn.v_proj.bias", (kv,), BF16),
            (p + "self_attn.o_proj.weight", (D, HEADS * HEAD_DIM), BF16),
            (p + "post_attention_layernorm.weight", (D,), BF16),
            (p + "mlp.gate_proj.weight", (FF, D), BF16), (p + "mlp.up_proj.weight", (FF, D), BF16),
            (p + "mlp.down_proj.weight", (D, FF), BF16),
        ]
    return out + [("model.norm.weight", (D,), BF16), ("lm_head.weight", (VOCAB, D), BF16)]


def _rng(name: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()), salt])


def base_tensor(name: str, shape: tuple) -> np.ndarray:
    """A deterministic bf16 base tensor: norms near 1, matrices Gaussian (std 0.02) plus 4 low-rank spikes."""
    rng = _rng(name, 0)
    if len(shape) == 1:
        x = (1.0 if "norm" in name else 0.0) + 0.02 * rng.standard_normal(shape, dtype=np.float32)
        return x.astype(BF16)
    m, n = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= 0.02
    u = rng.standard_normal((m, 4), dtype=np.float32)
    v = rng.standard_normal((4, n), dtype=np.float32) * np.float32(0.02 * 3 / math.sqrt(min(m, n)))
    x += u @ v
    return x.astype(BF16)


def tuned_tensor(name: str, shape: tuple) -> np.ndarray:
    """The base tensor with a planted share SHARE of its coordinates moved by exactly one ULP (bits + 1)."""
    x = base_tensor(name, shape)
    bits = x.view(np.uint16).reshape(-1)
    bits[_rng(name, 1).random(bits.size, dtype=np.float32) < SHARE] += 1
    return x


def planted_changed(name: str, shape: tuple) -> int:
    """Number of coordinates the tuned tensor moves (recomputed from the same random stream)."""
    return int(np.count_nonzero(_rng(name, 1).random(math.prod(shape), dtype=np.float32) < SHARE))


def generate(folder: Path, layers: int) -> tuple[Path, Path, list]:
    """Write base/ and tuned/ (sharded, with index) into ``folder``; returns their paths and the specs."""
    sp = specs(layers)
    shapes = {n: s for n, s, _ in sp}
    base, tuned = folder / "base", folder / "tuned"
    write_sharded(base, sp, lambda n: base_tensor(n, shapes[n]), SHARD_BYTES)
    write_sharded(tuned, sp, lambda n: tuned_tensor(n, shapes[n]), SHARD_BYTES)
    return base, tuned, sp


# ----------------------------------------------------------------------------------------------
# measuring a subprocess tree


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _tree_rss(pid: int) -> int:
    """Summed resident bytes of ``pid`` and its descendants now (0 if gone)."""
    kids, todo, total = _children(), [pid], 0
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
        todo += kids.get(p, [])
    return total


def measure(args: list[str]) -> tuple[int, float, float, str]:
    """Run ``python args...`` in the repository root; (exit status, wall seconds, peak tree RSS in MiB, stderr tail)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    th.join()
    return proc.returncode, wall, peak[0] / 2**20, err[-2000:]


READ = ("import sys, numpy as np\nbuf = np.empty(1 << 24, np.uint8)\nfor path in sys.argv[1:]:\n"
        "    with open(path, 'rb', buffering=0) as f:\n        while f.readinto(memoryview(buf)):\n            pass\n")


def read_time(files: list[Path]) -> float:
    """Seconds to read every file once from start to end in one process (16 MiB ``readinto`` blocks)."""
    rc, wall, _, err = measure(["-c", READ, *map(str, files)])
    if rc != 0:
        raise RuntimeError(err)
    return wall


def _pair(out: Path, base: Path, tuned: Path, *extra: str) -> list[str]:
    return ["-m", "verify", "pair", str(base), str(tuned), "--out", str(out), "--quiet", *extra]


# ----------------------------------------------------------------------------------------------


def main() -> int:
    """Generate (or reuse) the pair, measure reading, sparsity-only and the full analysis, print (and record) them."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=28, help="decoder layers (default 28, the 1.5B shape)")
    ap.add_argument("--keep", action="store_true", help="keep the generated pair and outputs (prints where)")
    ap.add_argument("--pair", default=None, help="reuse a pair kept by --keep (same --layers) instead of generating one")
    ap.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md and results_analyzer.json")
    ap.add_argument("--generate", action="store_true", help="only write the pair (kept), print its folders and stop")
    ap.add_argument("--repeats", type=int, default=5, help="sparsity-only runs, each after a reading of both checkpoints (default 5)")
    args = ap.parse_args()
    if args.repeats < 1:
        print(f"error: --repeats must be at least 1, got {args.repeats}.", file=sys.stderr)
        return 2
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    need = 2 * sum(math.prod(s) * 2 for _, s, _ in specs(args.layers)) + 2**30
    if not args.pair and shutil.disk_usage(root).free < need:
        print(f"error: {root} has {shutil.disk_usage(root).free / 2**30:.1f} GiB free, the pair needs {need / 2**30:.1f} GiB.", file=sys.stderr)
        return 2
    folder = Path(args.pair) if args.pair else Path(tempfile.mkdtemp(prefix="threegate-analyzer-", dir=root))
    keep = args.keep or bool(args.pair) or args.generate
    try:
        gen_s = 0.0
        if args.pair:
            base, tuned, sp = folder / "base", folder / "tuned", specs(args.layers)
        else:
            t = time.perf_counter()
            base, tuned, sp = generate(folder, args.layers)
            gen_s = time.perf_counter() - t
        if args.generate:
            print(f"base: {base}\ntuned: {tuned}")
            return 0
        params = sum(math.prod(s) for _, s, _ in sp)
        largest_f32 = max(math.prod(s) for _, s, _ in sp) * 4 / 2**20
        print(f"pair of {params:,} parameters x 2 under {folder} (generated in {gen_s:.0f} s)", file=sys.stderr)
        tiny = folder / "tiny"
        save_safetensors(tiny / "b.safetensors", {"model.layers.0.mlp.up_proj.weight": base_tensor("x", (64, 32))})
        save_safetensors(tiny / "t.safetensors", {"model.layers.0.mlp.up_proj.weight": tuned_tensor("x", (64, 32))})
        shutil.rmtree(tiny / "o", ignore_errors=True)
        _, _, baseline, _ = measure(_pair(tiny / "o", tiny / "b.safetensors", tiny / "t.safetensors", "--workers", "2"))
        files = sorted(base.glob("*.safetensors")) + sorted(tuned.glob("*.safetensors"))
        load0 = os.getloadavg()
        out_fast, out_full = folder / "out-sparsity", folder / "out-full"
        reads, fasts, peaks_fast = [], [], []
        for _ in range(args.repeats):  # interleaved: both see the same machine state; a second-long sample is noisy
            reads.append(read_time(files))
            shutil.rmtree(out_fast, ignore_errors=True)
            rc_f, fast, peak_f, err_f = measure(_pair(out_fast, base, tuned, "--sparsity-only", "--no-figures"))
            if rc_f != 0:
                break
            fasts.append(fast)
            peaks_fast.append(peak_f)
        reads.append(read_time(files))
        shutil.rmtree(out_full, ignore_errors=True)
        rc, full, peak, err = measure(_pair(out_full, base, tuned))
        load1 = os.getloadavg()
        if rc != 0 or rc_f != 0:
            print(f"error: verify pair exited with status {rc} / {rc_f}: {err or err_f}", file=sys.stderr)
            return 1
        summary = json.loads((out_full / "pair.json").read_text())
        fast_summary = json.loads((out_fast / "pair.json").read_text())
        expected = 1 - sum(planted_changed(n, s) for n, s, _ in sp) / params
        per_kind: dict[str, float] = {}
        for r in summary["tensors"]:
            per_kind[r["kind"]] = per_kind.get(r["kind"], 0.0) + r["seconds"]
        reading, fast = float(np.median(reads)), float(np.median(fasts))
        data = {
            "layers": args.layers, "params": params, "wall_s": full, "repeats": args.repeats,
            "sparsity_only_s": fast, "sparsity_only_runs_s": fasts, "read_s": reading, "read_runs_s": reads,
            "sparsity_only_over_read": fast / reading, "peak_tree_rss_mib": peak, "peak_tree_rss_sparsity_only_mib": max(peaks_fast),
            "baseline_tree_rss_mib": baseline, "above_baseline_mib": peak - baseline, "largest_tensor_f32_mib": largest_f32,
            "bound_mib": 2 * largest_f32, "within_bound": peak - baseline <= 2 * largest_f32, "under_6_min": full < 360,
            "sparsity_only_within_1_5x_read": fast <= 1.5 * reading,
            "sparsity_reported": summary["sparsity_bf16"], "sparsity_only_reported": fast_summary["sparsity_bf16"],
            "sparsity_planted": expected, "sparsity_exact": summary["sparsity_bf16"] == expected == fast_summary["sparsity_bf16"],
            "task_seconds_by_kind": per_kind, "generate_s": gen_s, "load_avg_before": load0, "load_avg_after": load1,
            "cpus": os.cpu_count(),
        }
        print(json.dumps(data, indent=1), file=sys.stderr)
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        if args.record:
            _record(args.layers, params, data, summary, expected)
        return 0
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _span(xs: list) -> str:
    return f"{min(xs):.2f} to {max(xs):.2f} s"


def _record(layers: int, params: int, data: dict, summary: dict, expected: float) -> None:
    from common import write_results  # this folder's helper, beside this script

    kinds = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(data["task_seconds_by_kind"].items(), key=lambda kv: -kv[1]))
    md = f"""## Real-checkpoint analyzer (`verify pair`), synthetic 1.5B-shape pair

`python benchmarks/analyzer.py --layers {layers} --record`: a bf16 pair with the shapes of a {layers}-layer
Qwen2-1.5B-style decoder ({params:,} parameters per checkpoint, sharded with an index file; {100 * SHARE:.0f} % of
coordinates moved by one ULP), analysed by `verify pair` (rank k = 64, alpha = 0.5, energy sweep 16/64/256/512,
200 null draws) in a subprocess with its worker processes.

| quantity | value |
| --- | --- |
| full analysis, wall time | {data['wall_s']:.0f} s ({data['wall_s'] / 60:.1f} min; goal under 6 min) |
| sparsity only (`--sparsity-only`), wall time, median of {data['repeats']} | {data['sparsity_only_s']:.2f} s (runs {_span(data['sparsity_only_runs_s'])}) |
| reading both checkpoints once (one process), median of {len(data['read_runs_s'])}, one before each sparsity run and one after the last | {data['read_s']:.2f} s (runs {_span(data['read_runs_s'])}) |
| sparsity only / reading, ratio of the medians | {data['sparsity_only_over_read']:.2f} (goal at most 1.5) |
| peak resident memory of the process tree (full / sparsity only) | {data['peak_tree_rss_mib']:,.0f} / {data['peak_tree_rss_sparsity_only_mib']:,.0f} MiB |
| baseline: the same tree on a one-tensor pair | {data['baseline_tree_rss_mib']:,.0f} MiB |
| peak above baseline | {data['above_baseline_mib']:,.0f} MiB |
| bound: 2 x largest tensor in float32 (embed_tokens {VOCAB} x {D}) | {data['bound_mib']:,.0f} MiB |
| reported bf16 sparsity (full / sparsity only) / planted | {100 * summary['sparsity_bf16']:.4f} % / {100 * data['sparsity_only_reported']:.4f} % / {100 * expected:.4f} % |
| task time by module kind (summed over worker processes) | {kinds} |
| load average (1 min) before / after | {data['load_avg_before'][0]:.2f} / {data['load_avg_after'][0]:.2f} on {os.cpu_count()} cores |
"""
    write_results("analyzer", md, data)


if __name__ == "__main__":
    sys.exit(main())
