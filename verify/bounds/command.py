"""`python -m verify theory`: every bound of theory/ on many random and structured instances.

Prints one line per bound (instances, violations, median and worst tightness = lhs / rhs), the
measured findings under the table, and exits non-zero if a bound that must hold was violated.
"""

from __future__ import annotations

import importlib
import time

from verify.bounds.row import BoundRow

MODULES = ("verify.bounds.precision", "verify.bounds.kl", "verify.bounds.spectral", "verify.bounds.curvature")


def collect(seed: int = 0, scale: float = 1.0) -> list[tuple[str, BoundRow]]:
    """(gate module, row) for every bound; ``scale`` multiplies each module's default instance count."""
    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        n_default = mod.rows.__defaults__[-1]
        for row in mod.rows(seed=seed, n=max(10, int(n_default * scale))):
            out.append((name.rsplit(".", 1)[-1], row))
    return out


def render(rows: list[tuple[str, BoundRow]]) -> str:
    """The table and the findings as text."""
    head = f"{'gate':10s} {'bound':58s} {'kind':8s} {'inst':>6s} {'viol':>5s} {'median':>9s} {'worst':>9s}"
    lines = [head, "-" * len(head)]
    for gate, r in rows:
        kind = "must" if r.must_hold else "measured"
        lines.append(f"{gate:10s} {r.name[:58]:58s} {kind:8s} {r.instances:6d} {r.violations:5d} "
                     f"{r.median_tightness:9.3g} {r.worst_tightness:9.3g}")
    findings = [(gate, r) for gate, r in rows if r.finding]
    if findings:
        lines.append("")
        lines.append("Measured findings:")
        for gate, r in findings:
            lines.append(f"- [{gate}] {r.name}: {r.finding}")
    return "\n".join(lines)


def main(seed: int = 0, scale: float = 1.0) -> int:
    """Print the table; exit status 1 if a must-hold bound was violated."""
    t0 = time.time()
    rows = collect(seed, scale)
    print(render(rows))
    broken = [r for _, r in rows if r.must_hold and r.violations > 0]
    print(f"\n{len(rows)} bounds, {sum(r.instances for _, r in rows)} instances, "
          f"{len(broken)} must-hold bounds violated, {time.time() - t0:.1f} s")
    for r in broken:
        print(f"VIOLATED: {r.name} ({r.violations} of {r.instances} instances)")
    return 1 if broken else 0
