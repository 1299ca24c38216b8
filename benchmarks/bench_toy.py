"""Train-step and sampling throughput of the toy transformer per preset.

Measures, in one process: the float32 matmul peak (GFLOP/s); the pretraining step (tokens/s, achieved
GFLOP/s from an analytic count, ratio to the peak) at several batch sizes; sampling with and without the
KV cache at 16 new tokens; peak memory. Compile time is excluded (one warm-up call per shape).

FLOP count of one training step on B sequences of length T (T = prompt + completion - 1 inputs):
    forward  = 2 * N_matmul * B * T  +  4 * n_layers * T^2 * d * B
    training = 3 * forward           (backward = 2 x forward: gradients w.r.t. activations and weights)
where N_matmul = n_layers * (4 d^2 + 2 d d_ff) + d V are the weights used in matmuls (q, k, v, o, MLP,
unembedding; the embedding lookups are gathers, not matmuls) and the attention term counts QK^T and
probs @ V over all T keys (the causal mask is applied, not skipped). Layer norms, softmax, GELU, masks and
the Adam update are not counted, so the ratio to the matmul peak is a lower bound on hardware use.

Columns that explain a low ratio: 'matmul GFLOP/s at the model's shape' is a jitted (B*T, d) @ (d, d_ff)
product, the best the model's skinny matmuls can do here; 'matmul-bound ms' = step FLOPs / that rate,
the step time if every counted FLOP ran at it; the rest of 'ms/step' is unfused elementwise work, memory
traffic and per-op overhead. Batch 1 gives the fixed cost of a step.

One process on both cores splits each small op across two threads and reaches less than two processes
each pinned to its own core, which is how ``verify --workers N`` runs (each run on one core): the last
measurement times the small step at batch 64 in one pinned process per core at once and sums them.

    python benchmarks/bench_toy.py [--quick] [--medium] [--record]

Prints the tables; ``--record`` also writes them into benchmarks/RESULTS.md and results_bench_toy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import live_buffer_mib, matmul_peak_gflops, median_seconds, peak_rss_mib, write_results  # this folder
from toy_models.lm import ce_steps
from toy_models.pretrain import PRESETS, build_corpus
from toy_models.sampling import sample
from toy_models.transformer import init_params

HERE = Path(__file__).resolve().parent


def forward_flops_per_token(mcfg, seq_len: int) -> float:
    """Analytic forward FLOPs per token (see the module docstring)."""
    d, f, L = mcfg.d_model, mcfg.d_ff, seq_len
    n_matmul = mcfg.n_layers * (4 * d * d + 2 * d * f) + d * mcfg.vocab_size
    return 2 * n_matmul + mcfg.n_layers * 4 * L * d


def train_throughput(cfg, batch: int, steps: int, repeats: int) -> dict:
    """Tokens/s and GFLOP/s of `steps` scanned pretraining steps at a batch size."""
    graphdef, params = init_params(cfg.model, 0)
    corpus = cfg.corpus.__class__(**{**cfg.corpus.__dict__, "n_examples": 512})
    toks, mask = build_corpus(corpus, 0)
    toks, mask = jnp.asarray(toks), jnp.asarray(mask)
    opt = optax.adamw(1e-3)
    state = opt.init(params)
    P, _ = cfg.corpus.lengths
    L = toks.shape[1] - 1

    def go():
        p, s, losses = ce_steps(graphdef, opt, params, state, toks, mask, jax.random.key(0), prompt_len=P,
                                batch_size=batch, num_steps=steps)
        losses.block_until_ready()

    sec = median_seconds(go, repeats) / steps
    out = ce_steps(graphdef, opt, params, state, toks, mask, jax.random.key(0), prompt_len=P, batch_size=batch,
                   num_steps=steps)
    live = live_buffer_mib()  # inputs, corpus and one step's outputs held at once
    del out
    tokens = batch * L
    flops = 3 * forward_flops_per_token(cfg.model, L) * tokens
    return {"batch": batch, "seconds_per_step": sec, "tokens_per_s": tokens / sec, "gflops": flops / sec / 1e9,
            "live_buffer_mib": live}


def sampling_speed(cfg, batch: int, new_tokens: int, repeats: int, prompt_len: int | None = None) -> dict:
    """Median seconds to sample `new_tokens` for `batch` prompts with and without the KV cache.

    ``prompt_len`` None uses the task prompts of the preset; a number uses random prompts of that length
    (BOS first), to show how the gap grows with the prefix that recomputation repeats."""
    P = cfg.corpus.lengths[0] if prompt_len is None else prompt_len
    if prompt_len is None:
        toks, _ = build_corpus(cfg.corpus.__class__(**{**cfg.corpus.__dict__, "n_examples": batch}), 0)
        prompts = jnp.asarray(toks[:, :P])
    else:
        rnd = np.random.default_rng(0).integers(3, cfg.model.vocab_size, (batch, P)).astype(np.int32)
        rnd[:, 0] = 1
        prompts = jnp.asarray(rnd)
    mcfg = cfg.model.__class__(**{**cfg.model.__dict__, "max_len": max(cfg.model.max_len, P + new_tokens)})
    graphdef, params = init_params(mcfg, 0)
    out = {"prompt_len": P}
    for cached in (True, False):
        out["cached" if cached else "uncached"] = median_seconds(
            lambda: sample(graphdef, params, prompts, jax.random.key(0), cfg=mcfg, completion_len=new_tokens,
                           use_cache=cached)[0].block_until_ready(), repeats)
    out["speedup"] = out["uncached"] / out["cached"]
    # FLOP ratio of recomputation to caching for the matmul part: sum of prefix lengths over one token each
    out["token_ratio"] = sum(P + i + 1 for i in range(new_tokens)) / (P + new_tokens)
    return out


def shape_matmul_gflops(cfg, batch: int, repeats: int) -> float:
    """float32 matmul throughput at the model's own largest shape, (batch x L, d) @ (d, d_ff): the ceiling a
    train step of this size can reach, below the square-matrix peak."""
    L = sum(cfg.corpus.lengths) - 1
    a = jax.random.normal(jax.random.key(0), (batch * L, cfg.model.d_model), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (cfg.model.d_model, cfg.model.d_ff), jnp.float32)
    f = jax.jit(jnp.dot)
    sec = median_seconds(lambda: f(a, b).block_until_ready(), repeats)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / sec / 1e9


def one_core_step(preset: str, batch: int, repeats: int) -> dict:
    """In a process pinned to one core: compile and warm up, say 'ready', wait for a line on stdin (so that the
    pinned processes time together), then time the pretraining step as ``train_throughput`` does."""
    train_throughput(PRESETS[preset], batch, 2, 1)  # compile and warm up at this shape
    print("ready", flush=True)
    sys.stdin.readline()
    return train_throughput(PRESETS[preset], batch, 20, repeats)


def pinned_steps(preset: str, batch: int, repeats: int) -> dict | None:
    """One process per core, each pinned to its core, all timing the step at once: how ``verify --workers N``
    uses the machine (every run pinned to one core). Aggregate GFLOP/s = the sum over the processes; None where
    CPU affinity is unavailable."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    code = ("import os, json; os.sched_setaffinity(0, {%d}); "  # run in this folder, so bench_toy imports
            "from bench_toy import one_core_step; print(json.dumps(one_core_step(%r, %d, %d)))")
    procs = [subprocess.Popen([sys.executable, "-c", code % (c, preset, batch, repeats)], cwd=HERE,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for c in sorted(os.sched_getaffinity(0))]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", "a pinned benchmark process failed before timing"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"processes": len(outs), "seconds_per_step": [o["seconds_per_step"] for o in outs],
            "gflops": sum(o["gflops"] for o in outs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (few repeats, small batches)")
    ap.add_argument("--medium", action="store_true", help="include the medium preset (meant for a GPU)")
    ap.add_argument("--record", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    peak = matmul_peak_gflops(sizes=(512,) if args.quick else (512, 1024, 2048), repeats=repeats)
    presets = ["tiny", "small"] + (["medium"] if args.medium else [])
    batches = (1, 64) if args.quick else (1, 64, 256, 1024)
    results = {"matmul_peak_gflops": peak, "presets": {}}
    lines = ["## bench_toy", "", f"float32 matmul peak measured in this run: {peak['peak']:.1f} GFLOP/s "
             f"(by size: {', '.join(f'{n}: {g:.1f}' for n, g in peak['by_size'].items())}).", "",
             "| preset | batch | ms/step | tokens/s | GFLOP/s | % of matmul peak | matmul GFLOP/s at the model's shape | matmul-bound ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name in presets:
        cfg = PRESETS[name]
        rows = [train_throughput(cfg, b, 10 if args.quick else 20, repeats) for b in batches]
        for r in rows:
            r["shape_matmul_gflops"] = shape_matmul_gflops(cfg, r["batch"], repeats)
            r["pct_of_peak"] = 100 * r["gflops"] / peak["peak"]
            r["matmul_bound_ms"] = 1e3 * r["seconds_per_step"] * r["gflops"] / r["shape_matmul_gflops"]
        samp = [sampling_speed(cfg, 128, 16, repeats)] + [
            sampling_speed(cfg, 128, 16, repeats, prompt_len=pl) for pl in ((112,) if args.quick else (48, 112))]
        results["presets"][name] = {"train": rows, "sampling": samp}
        for r in rows:
            lines.append(f"| {name} | {r['batch']} | {1e3 * r['seconds_per_step']:.2f} | {r['tokens_per_s']:.0f} | "
                         f"{r['gflops']:.1f} | {r['pct_of_peak']:.1f} | {r['shape_matmul_gflops']:.1f} | {r['matmul_bound_ms']:.2f} |")
    lines += ["", "Sampling, 128 prompts x 16 new tokens (the first row of each preset uses its task prompts; "
              "'token ratio' = tokens the uncached path pushes through the model per token of the cached path):", "",
              "| preset | prompt length | cached s | uncached s | speed-up | token ratio |", "|---|---|---|---|---|---|"]
    for name in presets:
        for s in results["presets"][name]["sampling"]:
            lines.append(f"| {name} | {s['prompt_len']} | {s['cached']:.4f} | {s['uncached']:.4f} | {s['speedup']:.1f}x | {s['token_ratio']:.1f} |")
    pinned = pinned_steps("small", 64, repeats)
    if pinned is not None:
        one = next(r for r in results["presets"]["small"]["train"] if r["batch"] == 64)
        pinned["pct_of_peak"] = 100 * pinned["gflops"] / peak["peak"]
        results["pinned_small_64"] = pinned
        lines += ["", f"The small step at batch 64 in {pinned['processes']} processes at once, each pinned to one core (how "
                  "`verify --workers N` runs: every run on one core): "
                  + ", ".join(f"{1e3 * t:.1f}" for t in pinned["seconds_per_step"])
                  + f" ms/step, together {pinned['gflops']:.1f} GFLOP/s = {pinned['pct_of_peak']:.1f} % of the matmul peak "
                  f"above (one process on all cores: {one['pct_of_peak']:.1f} %)."]
    results["peak_rss_mib"] = peak_rss_mib()
    results["live_buffer_mib"] = max(r["live_buffer_mib"] for p in results["presets"].values() for r in p["train"])
    lines += ["", f"Peak resident memory of the benchmark process (getrusage maxrss): {results['peak_rss_mib']:.0f} MiB; "
              f"largest live jax buffer total (a train step's params, Adam state, corpus and outputs): {results['live_buffer_mib']:.1f} MiB."]
    if args.record:
        write_results("bench_toy", "\n".join(lines), results)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
