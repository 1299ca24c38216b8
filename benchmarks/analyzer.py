"""Wall time and peak memory of ``verify pair`` on a synthetic pair with the shapes of a 1.5B decoder.

The pair has the tensor names and shapes of a Qwen2-1.5B-style decoder (DS-R1-Distill-Qwen-1.5B):
28 layers, d_model 1536, MLP 8960, 12 query and 2 key/value heads of 128 (k_proj / v_proj 256 x 1536,
with q/k/v biases), vocabulary 151,936 (embed_tokens and an untied lm_head), RMS norms; bf16; sharded
with ``model.safetensors.index.json``. Weights are Gaussian plus a few low-rank spikes (so spectra have
outliers); the tuned checkpoint moves a planted share of the coordinates of every tensor by exactly one
bf16 ULP (bit pattern + 1), so the expected sparsity is known and checked.

The pair is written to a temporary folder outside the repository ($TMPDIR or /tmp, about 2 x 3.5 GB
for 28 layers) and deleted afterwards. ``verify pair`` runs in a subprocess; its peak memory is the
child's peak resident memory (VmHWM, memory maps included); the baseline is that of a child that only imports the analyzer
and starts JAX and matplotlib. Goal (the issue): under 10 minutes on 2 cores, and peak - baseline at
most 4x the largest tensor's float32 size.

    python benchmarks/analyzer.py [--layers N] [--keep]
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
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ml_dtypes
import numpy as np

from benchmarks.common import write_results
from verify.realckpt.layout import write_sharded

D, FF, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 1536, 8960, 151_936, 12, 2, 128
SHARE = 0.4  # planted share of coordinates moved by one ULP
BF16 = ml_dtypes.bfloat16
SHARD_BYTES = 2 * 2**30


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


_HWM = ("import atexit, os\n"
        "def _hwm():\n"
        "    kb = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    open(os.environ['THREEGATE_BENCH_HWM'], 'w').write(kb)\n"
        "atexit.register(_hwm)\n")


def _child(code: str, args: list[str], hwm_file: Path) -> tuple[int, float, float]:
    """Run ``python -c code args``; return (exit status, wall seconds, peak RSS in MiB of that child).

    The peak is the child's own VmHWM (/proc/self/status, read at exit), which counts resident pages of
    its memory maps; the rusage max RSS of a child is not used because Linux carries the parent's RSS
    at fork into it (this script holds a generated tensor when it starts the child)."""
    env = {**os.environ, "THREEGATE_BENCH_HWM": str(hwm_file)}
    t = time.perf_counter()
    rc = subprocess.run([sys.executable, "-c", _HWM + code, *args], cwd=Path(__file__).resolve().parent.parent, env=env).returncode
    wall = time.perf_counter() - t
    return rc, wall, int(hwm_file.read_text()) / 1024 if hwm_file.exists() else float("nan")


BASELINE = ("import jax.numpy as jnp, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot; "
            "import verify.realckpt.cli, verify.realckpt.analyze, verify.realckpt.outputs; jnp.ones(3).block_until_ready()")
RUN = "import sys; from verify.realckpt.cli import main; sys.exit(main(sys.argv[1:]))"


def main() -> int:
    """Generate the pair, time ``verify pair`` on it, check the planted sparsity, record the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=28, help="decoder layers (default 28, the 1.5B shape)")
    ap.add_argument("--keep", action="store_true", help="keep the generated pair and outputs (prints where)")
    ap.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--pair", default=None, help="reuse a pair kept by --keep (same --layers) instead of generating one")
    args = ap.parse_args()
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    need = 2 * sum(math.prod(s) * 2 for _, s, _ in specs(args.layers)) + 2**30
    free = shutil.disk_usage(root).free
    if free < need and not args.pair:
        print(f"error: {root} has {free / 2**30:.1f} GiB free, the pair needs {need / 2**30:.1f} GiB.", file=sys.stderr)
        return 2
    if args.pair:
        folder, args.keep = Path(args.pair), True
        base, tuned, sp, gen_s = folder / "base", folder / "tuned", specs(args.layers), 0.0
    else:
        folder = Path(tempfile.mkdtemp(prefix="threegate-analyzer-", dir=root))
    try:
        if not args.pair:
            t = time.perf_counter()
            base, tuned, sp = generate(folder, args.layers)
            gen_s = time.perf_counter() - t
        params = sum(math.prod(s) for _, s, _ in sp)
        largest_f32 = max(math.prod(s) for _, s, _ in sp) * 4 / 2**20
        print(f"generated {params:,} parameters x 2 in {gen_s:.0f} s under {folder}", file=sys.stderr)
        _, _, base_rss = _child(BASELINE, [], folder / "hwm-baseline")
        load0 = os.getloadavg()
        out = folder / "out"
        shutil.rmtree(out, ignore_errors=True)
        rc, wall, peak = _child(RUN, ["pair", str(base), str(tuned), "--out", str(out)], folder / "hwm-run")
        load1 = os.getloadavg()
        if rc != 0:
            print(f"error: verify pair exited with status {rc}", file=sys.stderr)
            return 1
        summary = json.loads((out / "pair.json").read_text())
        expected = 1 - sum(planted_changed(n, s) for n, s, _ in sp) / params
        per_kind: dict[str, float] = {}
        for r in summary["tensors"]:
            per_kind[r["kind"]] = per_kind.get(r["kind"], 0.0) + r["seconds"]
        above = peak - base_rss
        data = {
            "layers": args.layers, "params": params, "wall_s": wall, "peak_rss_mib": peak, "baseline_rss_mib": base_rss,
            "above_baseline_mib": above, "largest_tensor_f32_mib": largest_f32, "bound_mib": 4 * largest_f32,
            "within_bound": above <= 4 * largest_f32, "under_10_min": wall < 600,
            "sparsity_reported": summary["sparsity_bf16"], "sparsity_planted": expected,
            "sparsity_exact": summary["sparsity_bf16"] == expected,
            "seconds_by_kind": per_kind, "generate_s": gen_s, "load_avg_before": load0, "load_avg_after": load1,
            "cpus": os.cpu_count(),
        }
        print(json.dumps(data, indent=1), file=sys.stderr)
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        if not args.no_record:
            kinds = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1]))
            md = f"""## Real-checkpoint analyzer (`verify pair`), synthetic 1.5B-shape pair

`python benchmarks/analyzer.py --layers {args.layers}`: a bf16 pair with the shapes of a {args.layers}-layer
Qwen2-1.5B-style decoder ({params:,} parameters per checkpoint, sharded with an index file; {100 * SHARE:.0f} % of
coordinates moved by one ULP), analysed by `verify pair` (rank k = 64, alpha = 0.5) in a subprocess.

| quantity | value |
| --- | --- |
| wall time | {wall:.0f} s ({wall / 60:.1f} min; goal under 10 min) |
| peak RSS of the analyzer | {peak:,.0f} MiB |
| baseline RSS (imports, JAX, matplotlib) | {base_rss:,.0f} MiB |
| peak above baseline | {above:,.0f} MiB |
| bound: 4 x largest tensor in float32 (embed_tokens {VOCAB} x {D}) | {4 * largest_f32:,.0f} MiB |
| reported bf16 sparsity / planted | {100 * summary['sparsity_bf16']:.4f} % / {100 * expected:.4f} % |
| analysis time by module kind | {kinds} |
| load average (1 min) before / after | {load0[0]:.2f} / {load1[0]:.2f} on {os.cpu_count()} cores shared with other work |
"""
            write_results("analyzer", md, data)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
