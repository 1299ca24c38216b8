"""GPU rungs of the regime ladder (issue 22): the rungs 2 CPU cores cannot train (d_model 1024 and up, the presets
``ladder-w1024``, ``ladder-w2048`` and ``ladder-w1024-d4`` of ``toy_models.pretrain``) and the ``published``
profile's matched RL runs, on one GPU with the same code (``JAX_PLATFORMS`` picks the device), in under 10 minutes.

Each rung's bases are pretrained from the ladder's seeds and RL-trained exactly as regime.ladder does on the CPU
(``verify.experiments.ladder.ladder_run`` of the quick profile: the rlvr rule on each base's own median |w| at step
ratio 0.03, to +10 points); the numbers per base are regime.ladder's (``verify.measures.ladder.base_record``), so the
table sits beside the CPU ladder's. Runs go to their own cache (``--runs``, default ./runs-gpu), never the CPU
cache: a GPU run is not bit-identical to a CPU run of the same spec. New runs stop starting once ``--budget``
seconds have passed; what was skipped is listed.

    python benchmarks/bench_ladder_gpu.py [--seeds 3] [--budget 540] [--record]
    python benchmarks/bench_ladder_gpu.py --smoke        # CPU smoke test: one tiny rung, one seed, the tiny profile

Prints the table; ``--record`` also writes it into benchmarks/RESULTS.md and results_bench_ladder_gpu.json.
Exit status 2 (one sentence) when no GPU is present and ``--smoke`` is not given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

GPU_RUNGS = ("ladder-w1024", "ladder-w2048", "ladder-w1024-d4")
COLUMNS = ("params", "pass1", "pass8", "lr", "step_ratio", "drift_ratio", "relative_update_norm", "visible_share",
           "sign_consistency", "steps", "gain", "sparsity")


def parse(argv=None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="bases (pretraining seeds) per rung (default 3)")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds after which no new run starts (default 540)")
    ap.add_argument("--runs", default="runs-gpu", help="run cache of this script (default ./runs-gpu)")
    ap.add_argument("--smoke", action="store_true", help="CPU smoke test: one tiny rung and one seed on the tiny profile")
    ap.add_argument("--record", action="store_true", help="write the results into benchmarks/RESULTS.md")
    return ap.parse_args(argv)


def jobs(args):
    """[(label, profile, RunSpec)]: every base of every GPU rung, then the published profile's matched RL runs (the
    smoke test: one tiny rung of the tiny profile and its first matched RL run)."""
    from toy_models.pretrain import PRESETS
    from verify.experiments.ladder import ladder_run
    from verify.experiments.matched import matched
    from verify.knobs import Rung
    from verify.profiles import get_profile

    if args.smoke:
        p = get_profile("tiny")
        return [("w16-d1-c50", p, ladder_run(p, Rung(16), 0)), ("published rl", p, matched(p, (0,)).rl[0])]
    quick = get_profile("quick")
    out = []
    for name in GPU_RUNGS:
        b = PRESETS[name]
        rung = Rung(b.model.d_model, b.model.n_layers, b.corpus.correct_rate)
        out += [(rung.name, quick, ladder_run(quick, rung, s)) for s in quick.seeds[: args.seeds]]
    pub = get_profile("published")
    return out + [("published rl", pub, spec) for spec in matched(pub, pub.seeds[: args.seeds]).rl]


def main(argv=None) -> int:
    """Run what fits in the budget, print the table, record it with --record."""
    args = parse(argv)
    os.environ["THREEGATE_RUNS"] = str(Path(args.runs).resolve())
    import jax

    if jax.default_backend() != "gpu" and not args.smoke:
        print(f"error: no GPU (JAX backend {jax.default_backend()}); this script is for one GPU, or use --smoke to test it "
              "on the CPU.", file=sys.stderr)
        return 2
    from common import write_results  # this folder's helpers (the script's own folder is on the path)
    from toy_models.finetune import finetune
    from toy_models.pretrain import pretrain
    from verify.measures.ladder import base_record
    from verify.runs import Context

    device = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    t0, rows, skipped = time.time(), [], []
    for label, profile, spec in jobs(args):
        if time.time() - t0 > args.budget:
            skipped.append(f"{label} seed {spec.train.seed}")
            continue
        t = time.time()
        pretrain(spec.base)
        run = finetune(spec)
        rec = base_record(Context(profile, Path(args.runs)), run)
        rows.append({"label": label, "seed": spec.train.seed, "seconds": time.time() - t,
                     "reason": run.summary["reason"], **{k: rec[k] for k in COLUMNS}})
        print(f"{label} seed {spec.train.seed}: " + ", ".join(f"{k} {rec[k]:.3g}" for k in COLUMNS)
              + f" ({run.summary['reason']}, {time.time() - t:.0f} s)", flush=True)
    lines = ["## bench_ladder_gpu", "", f"Device: {device}; {time.time() - t0:.0f} s in all"
             + (" (smoke test: tiny rung on the CPU, numbers not meant to be read)" if args.smoke else "") + ".", "",
             "| rung | seed | " + " | ".join(COLUMNS) + " | stop | seconds |", "|---" * (len(COLUMNS) + 4) + "|"]
    lines += [f"| {r['label']} | {r['seed']} | " + " | ".join(f"{r[k]:.3g}" for k in COLUMNS)
              + f" | {r['reason']} | {r['seconds']:.0f} |" for r in rows]
    if skipped:
        lines += ["", "Not started within the budget: " + ", ".join(skipped) + "."]
    print("\n".join(lines))
    if args.record:
        write_results("bench_ladder_gpu", "\n".join(lines), {"device": device, "rows": rows, "skipped": skipped,
                                                             "smoke": args.smoke})
    return 0


if __name__ == "__main__":
    sys.exit(main())
