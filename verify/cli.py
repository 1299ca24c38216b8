"""`python -m verify all|CLAIM_ID|plan|list`: gather the plan, execute what is missing, decide, report.

The report folder is chosen and checked before anything trains (``verify.report_folder``)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from toy_models.config import ConfigError
from toy_models.progress import Display, showing
from verify.execute import execute
from verify.finish import finish
from verify.plan import build_plan
from verify.profiles import get_profile
from verify.registry import CLAIM_MODULES, ERROR, Verdict, load, load_all, report_sections
from verify.report import line, run_meta, tallies, write_report
from verify.report_folder import default_out, prepare_out
from verify.runs import Context


def enable_compilation_cache() -> None:
    """Persistent XLA compilation cache (first jit of a step drops from seconds to about one)."""
    import jax

    path = os.environ.get("THREEGATE_JAX_CACHE", os.path.abspath(".cache/jax"))
    os.environ.setdefault("THREEGATE_JAX_CACHE", path)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", path)  # worker processes (local and Ray) use the same cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def choose(target: str):
    """The claims a target names: 'all' (every claim but the sweeps), 'sweeps' (the grid claims),
    'everything', 'gates' (the Gate I-III, control and regime claims of 'all', without the case studies),
    one claim id, or a comma-separated list of ids (only their claim modules are imported)."""
    if target in ("all", "sweeps", "everything", "gates"):
        claims = load_all()
        groups = {"all": [c for c in claims.values() if not c.sweep], "sweeps": [c for c in claims.values() if c.sweep],
                  "everything": list(claims.values()),
                  "gates": [c for c in claims.values() if not c.sweep and c.id.startswith(("gate", "control", "regime"))]}
        return groups[target]
    ids = [t.strip() for t in target.split(",") if t.strip()]
    unknown = [i for i in ids if i not in CLAIM_MODULES]
    if unknown or not ids:
        raise ConfigError(f"Unknown claim {unknown[0] if unknown else target!r}; `python -m verify list` shows the ids.")
    return list(load(ids).values())


def crash_text(e: BaseException) -> str:
    """One sentence for a claim that crashed: the exception and the innermost frame of this project it came from
    (the file a CheckpointError or RunNotReady names is in its message)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "site-packages" not in f.filename]
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def decide(chosen, ctx_factory) -> list[tuple]:
    """Run every chosen claim's measurement on finished runs and finish it into a Verdict; a claim that crashes
    reads ERROR with what it failed on, and the others still run."""
    results = []
    for c in chosen:
        ctx = ctx_factory(c.id)
        t = time.time()
        try:
            v = finish(c, c.evaluate(ctx), ctx)
        except Exception as e:  # a crashed claim is reported, not hidden, and the others still run
            traceback.print_exc()
            text = crash_text(e)
            v = Verdict(c.id, ERROR, f"crashed: {text}", kind=c.kind, error=text)
        results.append((c, v, time.time() - t))
    return results


def check(target: str, profile_name: str = "tiny", out: str | None = None, *, workers: int = 1,
          quiet: bool = True) -> dict[str, Verdict]:
    """For notebooks and scripts: plan, execute and decide ``target`` (ids or 'all'); {claim id: Verdict}.
    Figures are written under ``out`` (default reports/notebook-<profile>); ``quiet`` shows no progress."""
    enable_compilation_cache()
    profile = get_profile(profile_name)
    chosen = choose(target)
    with showing(Display("off" if quiet else "auto")):
        execute(build_plan(chosen, profile), workers=workers)
    out_dir = Path(out or f"reports/notebook-{profile_name}").resolve()
    memo: dict = {}
    return {c.id: v for c, v, _ in decide(chosen, lambda cid: Context(profile, out_dir, claim_id=cid, _memo=memo))}


def run_claims(target: str, profile_name: str, out: str | None, *, quiet: bool = False, workers: int = 1,
               executor: str = "local", address: str | None = None, plan_target: str = "all") -> int:
    """Plan, execute and decide one claim, a list or all of them on a profile; print a line each; write the report.
    ``quiet`` (the command line's --quiet) shows no progress and prints the verdict lines only."""
    if target == "list":
        for c in load_all().values():
            print(f"{c.id:28s} {', '.join(c.paper_claims):12s} {'(sweep) ' if c.sweep else ''}{c.title}")
        return 0
    try:
        profile = get_profile(profile_name)
        chosen = choose(plan_target if target == "plan" else target)
        out_dir = Path(out or default_out(target, profile_name)).resolve()
        if target != "plan":
            prepare_out(out_dir, profile.name, [c.id for c in chosen])
        plan = build_plan(chosen, profile)
        if target == "plan":
            print(plan.render())
            return 0
        enable_compilation_cache()
        t0 = time.time()
        missing = len(plan.missing_runs()) + len(plan.missing_bases())
        if not quiet:
            print(f"plan: {len(plan.runs)} runs, {missing} to execute ({executor}, {workers} worker"
                  f"{'s' if workers > 1 else ''})", file=sys.stderr)
        with showing(Display("off" if quiet else "auto")):
            execute(plan, workers=workers, executor=executor, address=address)
        t_exec = time.time() - t0
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    memo: dict = {}
    t_decide = time.time()
    results = decide(chosen, lambda cid: Context(profile, out_dir, claim_id=cid, _memo=memo))
    t_decide = time.time() - t_decide
    base = Context(profile, out_dir, _memo=memo).base()
    meta = {"seeds": list(profile.seeds), "base_dir": str(base.directory), "base_pass_rates": base.pass_rates,
            "seconds": round(time.time() - t0, 1), "seconds_training": round(t_exec, 1),
            "seconds_deciding": round(t_decide, 1),
            "runs": len(plan.runs), "runs_executed": missing, "workers": workers, "executor": executor, **run_meta()}
    pairs = [(c, v) for c, v, _ in results]
    meta["sections"] = [text for text in (fn(pairs) for fn in report_sections()) if text]
    md = write_report(out_dir, profile.name, pairs, meta)
    print("")
    for c, v, sec in results:
        print(f"[{sec:6.1f} s] " + line(c, v) if not quiet else line(c, v))
    print(tallies(pairs))
    if not quiet:
        print(f"\nreport: {md} ({time.time() - t0:.0f} s; training {t_exec:.0f} s, deciding {t_decide:.0f} s)")
    crashed = [c.id for c, v, _ in results if v.status == ERROR]
    if crashed:
        print(f"error: {len(crashed)} claim(s) crashed: {', '.join(crashed)} (see ERROR in the report).", file=sys.stderr)
        return 1
    return 0
