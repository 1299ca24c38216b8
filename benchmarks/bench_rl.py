"""Fine-tuning throughput: the compiled training segment against the step loop, RL against SFT per token,
and several seeds at once with vmap against one after another.

One RL step = sampling num_generations completions for prompts_per_step prompts, verifying them, the
update, and the per-step measurements (exact step KL and its Fisher form on the batch, KL on the probe);
one SFT step = one cross-entropy update on demonstrations with the same measurements
(``toy_models.rl.rl_step``, ``toy_models.sft.sft_step``).

- "step loop": the body jitted alone (``toy_models.segment.train_step``), called from Python once per
  step with the metrics brought to the host every step (what the trainer did before compiled segments);
- "segment": ``toy_models.segment.train_segment``, the same steps as one compiled loop with one transfer.
Freshly initialised (bf16-rounded) models are used: the cost does not depend on the weights. Compile
time is excluded (one warm-up call); medians over repeats. The JAX backend and device are printed and
recorded; on a GPU the vmap row shows whether batching seeds pays there (on 2 CPU cores it does not).

    python benchmarks/bench_rl.py [--quick] [--record]

Prints the tables; ``--record`` also writes them into benchmarks/RESULTS.md and results_bench_rl.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp

from bench_toy import forward_flops_per_token  # this folder's scripts (the script's own folder is on the path)
from common import live_buffer_mib, matmul_peak_gflops, median_seconds, peak_rss_mib, write_results
from toy_models.finetune import RunSetup, run_preset
from toy_models.optim import init_opt_state
from toy_models.pretrain import Base
from toy_models.sampling import sample
from toy_models.segment import init_state, train_segment, train_step
from toy_models.steps import probe_logp
from toy_models.transformer import init_params

SEGMENT = 10  # steps per timed segment (the trainer's eval_every)


def setup(preset: str, base: str) -> tuple:
    """(spec, RunSetup) of a preset on a freshly initialised base of the named preset."""
    spec = run_preset(preset, base, ["train.eval_problems=32", "train.probe_size=32", "train.pool_per_task=256",
                                     "train.precision=fp32_master"])
    graphdef, params = init_params(spec.base.model, 0)
    P, C = spec.base.corpus.lengths
    fake = Base(spec.base, graphdef, params, Path("."), {})
    return spec, RunSetup(spec, fake)


def fresh_state(spec, s):
    """A new carry (train_segment donates its input)."""
    return init_state(s.ref_params, init_opt_state(spec.train.optim(), s.ref_params), s.ref_params)


def segment_vs_loop(preset: str, base: str, repeats: int) -> dict:
    """Seconds per step of a compiled segment and of the step loop, and sequences per step."""
    spec, s = setup(preset, base)
    st, lr = s.statics, spec.train.hyper()

    def segment():
        out = train_segment(st, fresh_state(spec, s), s.data, lr, s.run_key, s.data_key, jnp.int32(0),
                            jnp.int32(SEGMENT), SEGMENT)
        jax.block_until_ready(out)

    def loop():
        state = fresh_state(spec, s)
        plp = probe_logp(st, state.trainable, s.data.probe)
        for t in range(SEGMENT):
            state, plp, m, ok = train_step(st, state, plp, s.data, lr, s.run_key, s.data_key, jnp.int32(t))
            jax.device_get((m, ok))  # the old loop brought every step's metrics to the host

    seg = median_seconds(segment, repeats) / SEGMENT
    step = median_seconds(loop, repeats) / SEGMENT
    seqs, length = spec.batch_sequences, sum(spec.base.corpus.lengths)
    sampling = None
    if spec.train.method == "rl":  # the sampling part of a step alone: the step's batch of prompts, its sampler
        prompts = s.data.pool.prompts_NP[:seqs]
        sampling = median_seconds(lambda: sample(st.graphdef, s.ref_params, prompts, s.run_key, cfg=st.mcfg,
                                                 completion_len=st.completion_len)[0].block_until_ready(), repeats)
    tokens = seqs * length
    # counted FLOPs of the update only (bench_toy's formula, length - 1 inputs); measurements uncounted: a lower bound
    flops = 3 * forward_flops_per_token(spec.base.model, length - 1) * seqs * (length - 1)
    return {"base": base, "preset": preset, "segment_s": seg, "loop_s": step, "speedup": step / seg, "sampling_s": sampling,
            "sequences_per_step": seqs, "tokens_per_step": tokens, "segment_tokens_per_s": tokens / seg,
            "update_gflop": flops / 1e9}


def vmap_seeds(base: str, repeats: int, n: int = 4) -> dict:
    """grpo_kl: n seeds' segments one after another against one vmapped segment over the seeds."""
    spec, s = setup("grpo_kl", base)
    st, lr = s.statics, spec.train.hyper()
    keys = jax.random.split(jax.random.key(1), n)

    def one(state, key):
        return train_segment.__wrapped__(st, state, s.data, lr, key, s.data_key, jnp.int32(0), jnp.int32(SEGMENT), SEGMENT)

    jone = jax.jit(one)
    vone = jax.jit(jax.vmap(one))
    stacked = lambda: jax.tree.map(lambda x: jnp.stack([x] * n), fresh_state(spec, s))  # noqa: E731
    seq = median_seconds(lambda: [jax.block_until_ready(jone(fresh_state(spec, s), k)) for k in keys], repeats)
    par = median_seconds(lambda: jax.block_until_ready(vone(stacked(), keys)), repeats)
    return {"base": base, "seeds": n, "sequential_s": seq, "vmapped_s": par, "speedup": seq / par,
            "live_buffer_mib": live_buffer_mib()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny base only, two repeats")
    ap.add_argument("--record", action="store_true", help="write the results into benchmarks/RESULTS.md")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    bases = ("tiny",) if args.quick else ("tiny", "small")
    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))"
    peak = matmul_peak_gflops(sizes=(512,) if args.quick else (512, 1024, 2048), repeats=repeats)["peak"]
    rows = [segment_vs_loop(p, b, repeats) for b in bases for p in ("grpo_kl", "dapo_clip", "sft")]
    vm = [vmap_seeds(b, repeats) for b in bases]
    per_token = {b: {r["preset"]: r["segment_s"] / r["tokens_per_step"] for r in rows if r["base"] == b} for b in bases}
    lines = ["## bench_rl", "", f"JAX backend: {device}.", "",
             f"Seconds per step, {SEGMENT} steps as one compiled segment against the step loop (one jitted step per "
             "Python call and a host transfer per step, the trainer before compiled segments):", "",
             "| base | preset | sequences/step | step loop ms/step | segment ms/step | speed-up | segment tokens/s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['base']} | {r['preset']} | {r['sequences_per_step']} | {1e3 * r['loop_s']:.1f} | "
              f"{1e3 * r['segment_s']:.1f} | {r['speedup']:.2f}x | {r['segment_tokens_per_s']:.0f} |" for r in rows]
    sft = [r for r in rows if r["preset"] == "sft"]
    for r in sft:
        r["loop_pct_of_peak"] = 100 * r["update_gflop"] / r["loop_s"] / peak
        r["segment_pct_of_peak"] = 100 * r["update_gflop"] / r["segment_s"] / peak
    lines += ["", f"SFT step against the float32 matmul peak measured in this run ({peak:.1f} GFLOP/s), counting the "
              "update's matmul FLOPs only (bench_toy's formula; the per-step measurements are extra work, so this is a "
              "lower bound):", "", "| base | batch | GFLOP per step | step loop % of peak | segment % of peak |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['base']} | {r['sequences_per_step']} | {r['update_gflop']:.2f} | {r['loop_pct_of_peak']:.1f} | "
              f"{r['segment_pct_of_peak']:.1f} |" for r in sft]
    lines += ["", "Cost per token of an RL step (sampling, two scoring passes, update and measurements) relative to an "
              "SFT step (update and measurements), segment times: "
              + "; ".join(f"{b}: grpo_kl {per_token[b]['grpo_kl'] / per_token[b]['sft']:.2f}x, dapo_clip "
                          f"{per_token[b]['dapo_clip'] / per_token[b]['sft']:.2f}x" for b in bases) + ". "
              "Sampling the step's completions alone (same batch and sampler, jitted by itself), as a share of the "
              "segment step: " + "; ".join(f"{r['base']} {r['preset']} {1e3 * r['sampling_s']:.1f} ms = "
                                           f"{100 * r['sampling_s'] / r['segment_s']:.0f} %" for r in rows
                                           if r["sampling_s"] is not None) + ".", "",
              "Four seeds of grpo_kl, one segment each, one after another against one vmapped segment:", "",
              "| base | sequential s | vmapped s | speed-up |", "|---|---|---|---|"]
    lines += [f"| {v['base']} | {v['sequential_s']:.3f} | {v['vmapped_s']:.3f} | {v['speedup']:.2f}x |" for v in vm]
    lines += ["", f"Peak resident memory of the benchmark process (getrusage maxrss): {peak_rss_mib():.0f} MiB."]
    if args.record:
        write_results("bench_rl", "\n".join(lines), {"device": device, "matmul_peak_gflops": peak, "steps": rows,
                                                      "rl_over_sft_per_token": per_token, "vmap": vm,
                                                      "peak_rss_mib": peak_rss_mib()})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
