"""RL and SFT step throughput, and training several seeds at once with vmap against one after another.

One RL step = sampling num_generations completions for prompts_per_step prompts, verifying them, and
num_iterations updates (everything in one jitted function, toy_models.rl.rl_step); one SFT step = one
cross-entropy update on demonstrations (toy_models.sft.sft_step); both also compute their per-step
change and probe metrics, as in real runs. Freshly initialised (bf16-rounded) models are used: the cost
does not depend on the weights. Compile time is excluded; medians over repeats.

Seeds at once: ``vmap_seeds`` maps the step over (params, opt_state, key) with everything else (the
static graphdef/configs/optimizer/mode/lengths/sharding, the reference params, pool and probe) shared.
It is timed against the same seeds run one after another; to show where the ratio comes from, the two
halves of the step (sampling, and the gradient of the completion log-probs) are timed the same way.

    python benchmarks/bench_rl.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

import jax.numpy as jnp  # noqa: E402

from benchmarks.common import live_buffer_mib, median_seconds, peak_rss_mib, write_results  # noqa: E402
from toy_models.metrics import completion_logp  # noqa: E402
from toy_models.sampling import sample  # noqa: E402
from toy_models.finetune import _optimizer, run_preset  # noqa: E402
from toy_models.pool import build_pool, build_probe  # noqa: E402
from toy_models.rl import rl_step  # noqa: E402
from toy_models.sft import sft_step  # noqa: E402
from toy_models.storage import round_tree_bf16  # noqa: E402
from toy_models.transformer import init_params  # noqa: E402


def setup(preset: str, base: str):
    """Everything a step needs for a preset on a (fresh) base model."""
    cfg = run_preset(preset, base, ["train.eval_problems=32", "train.probe_size=32", "train.pool_per_task=256"])
    mcfg = cfg.base.model
    P, C = cfg.base.corpus.lengths
    graphdef, params = init_params(mcfg, 0)
    params = round_tree_bf16(params)
    tasks, size = cfg.base.corpus.tasks, cfg.base.corpus.size
    pool = build_pool(tasks, size, cfg.train.pool_per_task, P, C, 0)
    heldout = build_pool(tasks, size, cfg.train.eval_problems, P, C, 0, heldout=True)
    probe = build_probe(graphdef, mcfg, params, heldout, cfg.train.probe_size, P, C, 0)
    opt = _optimizer(cfg.train)
    return cfg, graphdef, params, opt, pool, probe, P, C


def step_fn(preset: str, base: str):
    """(one-seed step(params, opt_state, key), params, opt_state, sequences per step)."""
    cfg, graphdef, params, opt, pool, probe, P, C = setup(preset, base)
    mode = cfg.train.precision
    if cfg.train.method == "rl":
        fn = lambda p, s, k: rl_step(graphdef, cfg.base.model, cfg.rl, opt, mode, P, C, None, p, s, params, pool, probe, k)  # noqa: E731
        seqs = cfg.rl.prompts_per_step * cfg.rl.num_generations
    else:
        fn = lambda p, s, k: sft_step(graphdef, opt, mode, P, cfg.train.batch_size, None, p, s, pool, probe, k)  # noqa: E731
        seqs = cfg.train.batch_size
    return fn, params, opt.init(params), seqs


def block(out):
    jax.tree.map(lambda x: x.block_until_ready(), out)


def vmap_seeds(fn):
    """Jitted step over a leading seed axis of its arguments (params, opt_state, key); the rest is closed over."""
    return jax.jit(jax.vmap(fn))


def stack(tree, n: int):
    return jax.tree.map(lambda x: jnp.stack([x] * n), tree)


def seeds_ratio(fn, args, keys, repeats: int) -> dict:
    """Seconds for len(keys) jitted calls of fn(*args, key) one after another, and for one vmapped call."""
    n = len(keys)
    jfn, vfn = jax.jit(fn), vmap_seeds(fn)
    vargs = [stack(a, n) for a in args]
    seq = median_seconds(lambda: [block(jfn(*args, k)) for k in keys], repeats)
    par = median_seconds(lambda: block(vfn(*vargs, keys)), repeats)
    return {"sequential_s": seq, "vmapped_s": par, "speedup": seq / par, "live_buffer_mib": live_buffer_mib()}


def halves(base: str, keys, repeats: int) -> dict:
    """The seeds ratio of the sampling half and of the gradient half of a grpo_kl step, separately."""
    cfg, graphdef, params, opt, pool, probe, P, C = setup("grpo_kl", base)
    rl, mcfg = cfg.rl, cfg.base.model
    prompts = jnp.repeat(pool.prompts_NP[: rl.prompts_per_step], rl.num_generations, axis=0)
    samp = lambda p, k: sample(graphdef, p, prompts, k, cfg=mcfg, completion_len=C)  # noqa: E731
    tokens = jnp.concatenate([prompts, samp(params, keys[0])[0]], axis=1)
    grad = lambda p, k: jax.grad(lambda q: completion_logp(graphdef, q, tokens, P).sum())(p)  # noqa: E731
    return {"sample": seeds_ratio(samp, [params], keys, repeats), "grad": seeds_ratio(grad, [params], keys, repeats)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    bases = ("tiny",) if args.quick else ("tiny", "small")
    rows, vm, live = [], [], 0.0
    for base in bases:
        for preset in ("grpo_kl", "dapo_clip", "sft"):
            fn, params, state, seqs = step_fn(preset, base)
            sec = median_seconds(lambda: block(fn(params, state, jax.random.key(0))), repeats)
            rows.append({"base": base, "preset": preset, "seconds_per_step": sec, "steps_per_s": 1 / sec,
                         "sequences_per_s": seqs / sec})
        fn, params, state, _ = step_fn("grpo_kl", base)
        keys = jax.random.split(jax.random.key(1), 4)
        vm.append({"base": base, "seeds": 4, **seeds_ratio(fn, [params, state], keys, repeats),
                   **halves(base, keys, repeats)})
        live = max(live, vm[-1]["live_buffer_mib"])
    lines = ["## bench_rl", "", "| base | preset | ms/step | steps/s | sequences/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['base']} | {r['preset']} | {1e3 * r['seconds_per_step']:.1f} | {r['steps_per_s']:.1f} | "
              f"{r['sequences_per_s']:.0f} |" for r in rows]
    lines += ["", "Four seeds of grpo_kl: one step each, one after another, against one vmapped step "
              "(speed-up = sequential / vmapped); then the same for the sampling half and the gradient half alone:", "",
              "| base | sequential s | vmapped s | speed-up | sampling speed-up | gradient speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {v['base']} | {v['sequential_s']:.3f} | {v['vmapped_s']:.3f} | {v['speedup']:.2f}x | "
              f"{v['sample']['speedup']:.2f}x | {v['grad']['speedup']:.2f}x |" for v in vm]
    lines += ["", f"Peak resident memory of the benchmark process (getrusage maxrss): {peak_rss_mib():.0f} MiB; "
              f"largest live jax buffer total (4 stacked seeds' params and Adam state, pool, probe): {live:.1f} MiB."]
    write_results("bench_rl", "\n".join(lines), {"steps": rows, "vmap": vm, "peak_rss_mib": peak_rss_mib(),
                                                  "live_buffer_mib": live})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
