"""Command line of the real-checkpoint analyzer: ``pair BASE TUNED ...`` and ``pairs BASE T1 T2 ...``.

    python -m verify pair BASE TUNED [--out DIR] [--rank K] [--alpha A] [--include REGEX] [--exclude REGEX]
                                     [--sweep 16,64,256,512] [--draws N] [--seed S] [--sparsity-only] [--workers N]
    python -m verify pairs BASE T1 T2 ... [--out DIR] [--consensus REGEX] [same options]

BASE and TUNED: a ``.safetensors`` file, or a folder with ``model.safetensors`` or shards and
``model.safetensors.index.json``. ``pairs`` reads T1 T2 ... in the order given: give one run's checkpoints in
step order for the consecutive-checkpoint numbers (C4). Outputs (``pair-out`` / ``pairs-out`` by default) are
written only after the whole analysis succeeded and never replace files this command did not write
(``staging``). The terminal shows the reading of ``pair.md``.

Exit status: 0 done; 2 bad input or usage (one sentence naming the file and tensor on stderr, ``--out`` left as it
was); 3 fewer than 90 % of the parameters matched by name (outputs written, loud warning; ``--allow-partial``
accepts it); 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

DEFAULT_CONSENSUS = r"(^|\.)(layers|blocks|h)\.0\.(self_attn|attn)\.(q|k|v|o)(_proj)?\.(weight|kernel)$"
PARTIAL_EXIT = 3


def _ints(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``pair`` or ``pairs``."""
    p = argparse.ArgumentParser(
        prog=f"python -m verify {command}",
        description=("Compare a tuned checkpoint with its base: bf16 update sparsity (C1, C2) against the paper's bands and a "
                     "magnitude-matched null, spectrum drift and principal angles (C10), principal / low-magnitude overlap "
                     "and principal energy over k (C11), the structure of dW." if command == "pair" else
                     "Compare several tuned checkpoints with one base: each pair as `pair`, plus pairwise Jaccard and stripes "
                     "against the magnitude-matched null and consensus maps (C3), and changes between consecutive "
                     "checkpoints given in step order (C4)."))
    p.add_argument("base", help="base checkpoint: .safetensors file or folder (model.safetensors or shards + index)")
    if command == "pair":
        p.add_argument("tuned", nargs=1, help="tuned checkpoint (same forms as BASE)")
    else:
        p.add_argument("tuned", nargs="+", help="two or more tuned checkpoints of the same base (one run's in step order)")
    p.add_argument("--out", default=f"{command}-out", help=f"output folder: new, empty or an earlier output (default {command}-out)")
    p.add_argument("--rank", type=int, default=64, help="k of the top-k singular subspaces and principal mask (default 64)")
    p.add_argument("--alpha", type=float, default=0.5, help="share kept by the principal and low-magnitude masks (default 0.5)")
    p.add_argument("--sweep", type=_ints, default=(16, 64, 256, 512), help="ranks k of the principal-energy sweep (default 16,64,256,512)")
    p.add_argument("--draws", type=int, default=200, help="independent draws of the magnitude-matched null (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the null draws (default 0)")
    p.add_argument("--include", default=None, help="analyse only tensors whose name matches this regex (re.search)")
    p.add_argument("--exclude", default=None, help="skip tensors whose name matches this regex")
    p.add_argument("--sparsity-only", action="store_true", help="changed share per tensor only (no SVD, no null): about as fast as reading")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: 2 for large checkpoints, else 1)")
    p.add_argument("--allow-partial", action="store_true", help="exit 0 even when fewer than 90 %% of the parameters match by name")
    p.add_argument("--chunk", type=int, default=1 << 22, help="elements per streamed chunk (default 4194304)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--no-figures", action="store_true", help="write JSON, CSV and Markdown only (no PNG figures)")
    if command == "pairs":
        p.add_argument("--consensus", default=DEFAULT_CONSENSUS,
                       help="draw consensus maps for matrices whose name matches this regex (default: layer-0 q/k/v/o)")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``verify pair`` / ``verify pairs`` (argv[0] is "pair" or "pairs"); returns the exit status
    (module docstring)."""
    if not argv or argv[0] not in ("pair", "pairs"):
        print("error: the first argument must be `pair` or `pairs`.", file=sys.stderr)
        return 2
    command = argv[0]
    try:
        args = build_parser(command).parse_args(argv[1:])
    except SystemExit as e:  # argparse printed usage and its message
        return int(e.code) if isinstance(e.code, int) else 2
    if command == "pairs" and len(args.tuned) < 2:
        print("error: `pairs` needs at least two tuned checkpoints; use `pair` for one.", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    from verify.realckpt.layout import BadInput

    try:
        from verify.realckpt.analyze import analyze
        from verify.realckpt.options import Options
        from verify.realckpt.outputs import write_all
        from verify.realckpt.staging import check_out

        if args.workers is not None and args.workers < 1:
            raise BadInput(f"Option --workers must be at least 1, got {args.workers}.")
        opts = Options(rank=args.rank, alpha=args.alpha, include=args.include, exclude=args.exclude, chunk=args.chunk,
                       sweep=args.sweep, draws=args.draws, seed=args.seed, sparsity_only=args.sparsity_only)
        check_out(args.out)  # refuse a foreign folder before the analysis, not after it
        from toy_models.progress import Display, showing

        with showing(Display("off" if args.quiet else "auto")):
            res = analyze(args.base, args.tuned, opts, consensus=getattr(args, "consensus", None), workers=args.workers)
        out, summaries, ps = write_all(args.out, res, figures=not args.no_figures)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable file, full disk, permissions
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {args.out} was left as it was.", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line, the traceback on request
        if os.environ.get("THREEGATE_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error {type(e).__name__}: {e} (set THREEGATE_DEBUG=1 for the traceback).", file=sys.stderr)
        return 1
    for s in summaries:
        print(f"{command}: {s['tuned']}")
        for line in s["reading"]:
            print(f"  {line}")
    if ps is not None:
        for line in ps["reading"]:
            print(f"  {line}")
    print(f"outputs in {out}")
    if any(s["partial"] for s in summaries) and not args.allow_partial:
        share = min(s["matched_share"] for s in summaries)
        print(f"error: only {100 * share:.1f} % of the parameters were matched by name; the outputs describe that part only "
              "(rerun with --allow-partial to accept).", file=sys.stderr)
        return PARTIAL_EXIT
    return 0
