"""`python -m verify theory | list | plan [TARGET] | all | sweeps | everything | gates | CLAIM_ID[,CLAIM_ID...] [--profile P] [--workers N]
[--executor local|ray [--address ADDR]] | pair BASE TUNED [...] | pairs BASE T1 T2 ... [...]`."""

from __future__ import annotations

import argparse
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
    parser.add_argument("--scale", type=float, default=1.0, help="theory: multiply the number of instances")
    parser.add_argument("--quiet", action="store_true", help="print verdict lines only")
    args = parser.parse_args(argv)
    if args.target == "theory":
        from verify.bounds.command import main as theory_main

        return theory_main(args.seed, args.scale)
    from verify.cli import run_claims

    workers = args.workers if args.workers is not None else default_workers()
    return run_claims(args.target, args.profile, args.out, quiet=args.quiet, workers=workers,
                      executor=args.executor, address=args.address, plan_target=args.plan_target)


if __name__ == "__main__":
    sys.exit(main())
