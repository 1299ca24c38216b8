"""The regime record of a verdict: what the report keeps of every run a claim used (identity, role, stop, gain,
KL to the base, regime numbers) and the per-role medians over those runs (docs/science.md section 7).

A claim names the role of each run it rests on (``Measurement.runs`` as {role: runs}: "rl", "sft", "sft at equal
size", "placebo: rl at the sft rate", a control, a sweep); runs given as a plain list take their method as role.
Read by the finisher (attached to every verdict) and by the report (the profile's regime table, one row per role
so that matched runs, sweeps and controls are never pooled).
"""

from __future__ import annotations

import numpy as np

REGIME_KEYS = ("step_ratio", "drift_ratio", "walk_ratio", "sign_consistency", "relative_update_norm",
               "sparsity_bf16_all", "sparsity_bf16_eligible", "untouched_share")


def run_record(run, role: str | None = None) -> dict:
    """What the report keeps of one run: identity, role, where it stopped, gain, KL to the base, regime numbers."""
    t, s = run.spec.train, run.summary
    r = s.get("regime", {})
    return {"run": run.directory.name, "role": role or t.method, "method": t.method, "seed": t.seed, "lr": r.get("lr", t.lr),
            "precision": t.precision, "optimizer": t.optimizer, "steps": s.get("stopped_at"), "reason": s.get("reason"),
            "target_gain": t.target_gain, "gain": s.get("gain"), "kl_to_base": s.get("kl_to_base_final"),
            **{k: r.get(k) for k in REGIME_KEYS}}


def run_records(runs) -> list[dict]:
    """Records of a claim's runs (a list, or {role: runs}), each distinct run once (its first role)."""
    pairs = [(None, r) for r in runs] if not isinstance(runs, dict) else [(k, r) for k, v in runs.items() for r in v]
    out: dict = {}
    for role, r in pairs:
        out.setdefault(r.directory.name, run_record(r, role))
    return list(out.values())


def _median(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def regime_summary(records: list[dict]) -> dict:
    """Per role: the number of runs and the median over them of steps, gain, KL to the base, lr and every regime
    number."""
    out = {}
    for role in dict.fromkeys(r.get("role", r["method"]) for r in records):
        rs = [r for r in records if r.get("role", r["method"]) == role]
        out[role] = {"runs": len(rs), **{k: _median([r.get(k) for r in rs])
                                         for k in ("steps", "gain", "kl_to_base", "lr", *REGIME_KEYS)}}
    return out


def regime_brief(summary: dict) -> str:
    """The front table's regime cell: 'rl: step 0.06, drift 4.9, T 120, gain +0.10; ...' ('-': not recorded, e.g. the
    step ratio of a run read at a snapshot, whose per-step changes are summed over the whole run only)."""
    f = lambda m, k, fmt=".2g": "-" if m.get(k) is None else format(m[k], fmt)  # noqa: E731
    return "; ".join(f"{role}: step {f(m, 'step_ratio')}, drift {f(m, 'drift_ratio')}, T {f(m, 'steps', '.0f')}, "
                     f"gain {f(m, 'gain', '+.2f')}" for role, m in summary.items())


def regime_text(summary: dict) -> str:
    """One line per verdict: 'rl: lr 1e-4, step ratio 0.06, drift ratio 4.9, ||dW||/||W|| 0.016, T 120, gain +0.10; ...'."""
    parts = []
    for role, m in summary.items():
        f = lambda k, fmt=".2g": "?" if m.get(k) is None else format(m[k], fmt)  # noqa: E731
        parts.append(f"{role}: lr {f('lr')}, step ratio {f('step_ratio')}, drift ratio {f('drift_ratio')}, "
                     f"||dW||/||W|| {f('relative_update_norm')}, T {f('steps', '.0f')}, gain {f('gain', '+.2f')}")
    return "; ".join(parts)
