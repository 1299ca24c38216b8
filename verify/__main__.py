"""`python -m verify theory | all --profile quick|full|tiny | CLAIM_ID [--profile ...] | list`."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__)
    parser.add_argument("target", help="theory, all, list, or a claim id (see `list`)")
    parser.add_argument("--profile", default="quick", help="tiny | quick | full (for claims)")
    parser.add_argument("--out", default=None, help="report folder (default reports/<profile>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the theory instances")
    parser.add_argument("--scale", type=float, default=1.0, help="theory: multiply the number of instances")
    parser.add_argument("--quiet", action="store_true", help="no training progress")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    if args.target == "theory":
        from verify.theory import main as theory_main

        return theory_main(args.seed, args.scale)
    from verify.cli import run_claims

    return run_claims(args.target, args.profile, args.out, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
