"""Command line of the real-checkpoint analyzer: ``pair BASE TUNED ...`` and ``pairs BASE T1 T2 ...``.

    python -m verify pair BASE TUNED [--out DIR] [--rank K] [--alpha A] [--include REGEX] [--exclude REGEX]
    python -m verify pairs BASE T1 T2 ... [--out DIR] [--consensus REGEX] [same options]

BASE and TUNED: a ``.safetensors`` file, or a folder with ``model.safetensors`` or shards and
``model.safetensors.index.json``. Outputs (``pair-out`` / ``pairs-out`` by default) are written only
after the whole analysis succeeded. Bad input (a missing path, a file that is not safetensors, a
truncated file, a header that lies about offsets, NaN in a tensor, nothing to compare) prints one
sentence naming the file and tensor on stderr and exits with status 2, leaving the output folder as it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

DEFAULT_CONSENSUS = r"(^|\.)(layers|blocks|h)\.0\.(self_attn|attn)\.(q|k|v|o)(_proj)?\.(weight|kernel)$"


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``pair`` or ``pairs``."""
    p = argparse.ArgumentParser(
        prog=f"python -m verify {command}",
        description=("Compare a tuned checkpoint with its base: bf16 update sparsity (C1, C2), spectrum drift and "
                     "principal angles (C10), principal / low-magnitude overlap and energy (C11)." if command == "pair" else
                     "Compare several tuned checkpoints with one base: each pair as `pair`, plus pairwise Jaccard of "
                     "the changed masks against the independent baseline and consensus maps (C3)."))
    p.add_argument("base", help="base checkpoint: .safetensors file or folder (model.safetensors or shards + index)")
    if command == "pair":
        p.add_argument("tuned", nargs=1, help="tuned checkpoint (same forms as BASE)")
    else:
        p.add_argument("tuned", nargs="+", help="two or more tuned checkpoints of the same base")
    p.add_argument("--out", default=f"{command}-out", help=f"output folder (default {command}-out)")
    p.add_argument("--rank", type=int, default=64, help="k of the top-k singular subspaces and principal mask (default 64)")
    p.add_argument("--alpha", type=float, default=0.5, help="share kept by the principal and low-magnitude masks (default 0.5)")
    p.add_argument("--include", default=None, help="analyse only tensors whose name matches this regex (re.search)")
    p.add_argument("--exclude", default=None, help="skip tensors whose name matches this regex")
    p.add_argument("--chunk", type=int, default=1 << 22, help="elements per streamed chunk (default 4194304)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--no-figures", action="store_true", help="write JSON, CSV and Markdown only (no PNG figures)")
    if command == "pairs":
        p.add_argument("--consensus", default=DEFAULT_CONSENSUS,
                       help="draw consensus maps for matrices whose name matches this regex (default: layer-0 q/k/v/o)")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``verify pair`` / ``verify pairs`` (argv[0] is "pair" or "pairs"); returns the exit status:
    0 done, 2 bad input or usage (one sentence on stderr, output folder untouched), 1 internal error."""
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
        from verify.realckpt.analyze import Options, analyze
        from verify.realckpt.outputs import write_all

        if args.chunk < 8:
            raise BadInput(f"Option --chunk must be at least 8 elements, got {args.chunk}.")
        opts = Options(rank=args.rank, alpha=args.alpha, include=args.include, exclude=args.exclude, chunk=args.chunk)
        from toy_models.progress import Display, showing

        with showing(Display("off" if args.quiet else "auto")):
            res = analyze(args.base, args.tuned, opts, consensus=getattr(args, "consensus", None))
        out = write_all(args.out, res, figures=not args.no_figures)
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
    for p in res.pairs:
        s = p.summary()
        print(f"{command}: {s['tuned']}: bf16 sparsity {100 * s['sparsity_bf16']:.2f} % "
              f"(bitwise {100 * s['sparsity_bitwise']:.2f} %, abs 1e-5 {100 * s['sparsity_abs']:.2f} %) over {s['params']:,} "
              f"parameters; {len(s['missing'])} missing, {len(s['extra'])} extra, {len(s['mismatched'])} mismatched")
    print(f"outputs in {out}")
    return 0
