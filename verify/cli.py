"""Run claims for `python -m verify all|CLAIM_ID|list` and write the report."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from toy_models.config import ConfigError
from verify.profiles import get_profile
from verify.registry import INCONCLUSIVE, Verdict, load_all
from verify.report import line, write_report
from verify.runs import Context


def enable_compilation_cache() -> None:
    """Persistent XLA compilation cache (first jit of a step drops from seconds to about one)."""
    import jax

    path = os.environ.get("THREEGATE_JAX_CACHE", os.path.abspath(".cache/jax"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_claims(target: str, profile_name: str, out: str | None, *, quiet: bool = False) -> int:
    """Run one claim or all of them on a profile; print a line per claim; write the report."""
    claims = load_all()
    if target == "list":
        for c in claims.values():
            print(f"{c.id:28s} {', '.join(c.paper_claims):10s} {c.title}")
        return 0
    try:
        profile = get_profile(profile_name)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if target != "all" and target not in claims:
        print(f"error: unknown claim {target!r}; `python -m verify list` shows the ids.", file=sys.stderr)
        return 2
    enable_compilation_cache()
    chosen = list(claims.values()) if target == "all" else [claims[target]]
    ctx = Context(profile, Path(out or f"reports/{profile_name}").resolve(), quiet=quiet)
    t0 = time.time()
    base = ctx.base()
    print(f"base model ready ({base.directory.name}); pass rates "
          + ", ".join(f"{k} {100 * v:.0f}%" for k, v in base.pass_rates.items()), file=sys.stderr)
    results = []
    for c in chosen:
        t = time.time()
        try:
            v = c.run(ctx)
        except Exception as e:  # a crashed check is reported, not hidden, and the others still run
            traceback.print_exc()
            v = Verdict(c.id, INCONCLUSIVE, f"check failed: {type(e).__name__}: {e}")
        results.append((c, v))
        print(f"[{time.time() - t:6.1f} s] " + line(c, v), file=sys.stderr if quiet else sys.stdout)
    meta = {"seeds": list(profile.seeds), "base_dir": str(base.directory), "base_pass_rates": base.pass_rates,
            "seconds": round(time.time() - t0, 1)}
    md = write_report(ctx.out_dir, profile.name, results, meta)
    print("")
    for c, v in results:
        print(line(c, v))
    print(f"\nreport: {md} ({time.time() - t0:.0f} s)")
    return 0
