"""Command line: `python -m toy_models pretrain|rl|sft|dpo|simpo --preset NAME --set section.field=value ...`.

Exit status: 0 done (pretrain: every task in the pass-rate band, else 1), 2 a bad option or value (one
sentence), 1 a run that diverged or ran out of memory (one sentence; nothing of the run is kept), 130 / 143
on Ctrl-C / SIGTERM (one line; the unfinished run is removed)."""

from __future__ import annotations

import argparse
import sys

from toy_models.config import ConfigError, apply_overrides


def _print_base(base) -> None:
    from toy_models.pretrain import in_band

    print(f"base model: {base.directory}")
    print("held-out pass rate at temperature 1 (target band 10 % to 60 %):")
    for task, rate in base.pass_rates.items():
        flag = "in band" if 0.10 <= rate <= 0.60 else "OUT OF BAND"
        at = base.pass_at[task]
        print(f"  {task:6s} {100 * rate:5.1f} %  {flag}   pass@1 {100 * at[1]:5.1f} %, pass@8 {100 * at[8]:5.1f} %")
    print(f"all tasks in band: {in_band(base.pass_rates)}")


def _print_spectrum(base) -> None:
    from toy_models.checkpoint import read_meta

    summary = read_meta(base.directory / "checkpoint").get("spectrum", {})
    print("weight matrices, init -> base (mean over layers; pretraining concentrates energy in few directions):")
    print(f"  {'matrix':10s} {'stable rank':>22s} {'top-4 energy share':>22s}")
    for kind, s in summary.items():
        print(f"  {kind:10s} {s['stable_rank_init']:9.2f} -> {s['stable_rank_base']:9.2f} "
              f"{s['topk_energy_init']:10.3f} -> {s['topk_energy_base']:9.3f}")


def cmd_pretrain(args) -> int:
    from toy_models.pretrain import in_band, preset, pretrain

    cfg = apply_overrides(preset(args.preset), args.set)
    base = pretrain(cfg, force=args.force)
    _print_base(base)
    _print_spectrum(base)
    return 0 if in_band(base.pass_rates) else 1


def cmd_finetune(args) -> int:
    from toy_models.finetune import run_cli

    return run_cli(args.command, args.preset, args.set, base_preset=args.base, force=args.force)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toy_models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain (or load the cached) base model")
    p.add_argument("--preset", default="small", help="tiny | small | medium")
    for name, default in (("rl", "grpo_kl"), ("sft", "sft"), ("dpo", "dpo"), ("simpo", "simpo")):
        q = sub.add_parser(name, help=f"fine-tune a base model by {'SimPO' if name == 'simpo' else name.upper()}")
        q.add_argument("--preset", default=default, help="fine-tuning preset")
        q.add_argument("--base", default="small", help="base-model preset (tiny | small | medium)")
    for q in sub.choices.values():
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.d_model=128")
        q.add_argument("--quiet", action="store_true", help="no progress display")
        q.add_argument("--force", action="store_true", help="retrain even if a cached run exists")
    args = parser.parse_args(argv)
    from toy_models.interrupts import stoppable
    from toy_models.progress import Display, showing

    with showing(Display("off" if args.quiet else "auto")):
        return stoppable(lambda: _run(args), "the unfinished run was removed; finished runs are kept")


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)


def _run(args) -> int:
    from toy_models.checkpoint import CheckpointError
    from toy_models.finetune import TrainingDiverged

    try:
        return cmd_pretrain(args) if args.command == "pretrain" else cmd_finetune(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TrainingDiverged, FloatingPointError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: out of memory while training ({first[:200]}); nothing of the run was kept; use a smaller "
              "batch or model.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
