"""`python -m verify theory | list | plan [TARGET] | all | sweeps | everything | gates | CLAIM_ID[,CLAIM_ID...] [--profile P] [--workers N]
[--executor local|ray [--address ADDR]] [--verify-cache full|sizes] | pair BASE TUNED [...] | pairs BASE T1 T2 ... [...]`.

Exit status: 0 done, 2 a bad option or value (one sentence), 130 / 143 on Ctrl-C / SIGTERM (one line: the
workers are stopped, finished runs kept, unfinished ones removed)."""

from __future__ import annotations

import argparse
import math
import os
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    if argv and argv[0] in ("pair", "pairs"):
        from verify.realckpt.cli import main as pair_main

        return pair_main(argv)
    from verify.execute import default_workers

    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__)
    parser.add_argument("target", help="theory, list, plan, all (every claim but the sweeps), sweeps, everything, gates "
                                       "(Gate I-III, control, regime), or claim "
                                       "ids (see `list`); also `pair`/`pairs` (see their --help)")
    parser.add_argument("plan_target", nargs="?", default="all", help="with `plan`: what to plan (default all)")
    parser.add_argument("--profile", default="quick", help="tiny | quick | full | rlvr (for claims)")
    parser.add_argument("--out", default=None, help="report folder (default reports/<profile>)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"local worker processes for the missing runs (default here: {default_workers()})")
    parser.add_argument("--executor", default="local", choices=("local", "ray"), help="where missing runs execute")
    parser.add_argument("--address", default=None, help="Ray cluster address (with --executor ray; default: a local cluster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the theory instances")
    parser.add_argument("--scale", type=float, default=1.0, help="theory: multiply the number of instances (a positive number; at least 10 per bound)")
    parser.add_argument("--quiet", action="store_true", help="print verdict lines only")
    parser.add_argument("--verify-cache", default=None, choices=("full", "sizes"),
                        help="how cached runs are checked before use: sizes and SHA-256 (full, the default) or sizes "
                             "only, for caches too large to hash (sets $THREEGATE_VERIFY_CACHE)")
    args = parser.parse_args(argv)
    if args.target == "theory":
        if not (math.isfinite(args.scale) and args.scale > 0):
            print(f"error: Option `--scale` must be a positive finite number, got {args.scale}.", file=sys.stderr)
            return 2
        from verify.bounds.command import main as theory_main

        return theory_main(args.seed, args.scale)
    from toy_models.interrupts import stoppable
    from toy_models.run_store import VERIFY_ENV
    from verify.cli import run_claims

    if args.verify_cache:
        os.environ[VERIFY_ENV] = args.verify_cache  # worker processes inherit it
    workers = args.workers if args.workers is not None else default_workers()
    return stoppable(lambda: run_claims(args.target, args.profile, args.out, quiet=args.quiet, workers=workers,
                                        executor=args.executor, address=args.address, plan_target=args.plan_target),
                     "workers stopped; finished runs are kept, unfinished ones were removed")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head` or a pager that closed early: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
