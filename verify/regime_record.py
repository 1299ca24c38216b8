"""The regime record of a verdict: what the report keeps of every run a claim used (identity, stop, gain, KL
to the base, regime numbers) and the per-method medians over those runs (docs/science.md section 7).

Read by the finisher (attached to every verdict) and by the report (the profile's regime table).
"""

from __future__ import annotations

import numpy as np

REGIME_KEYS = ("step_ratio", "drift_ratio", "walk_ratio", "sign_consistency", "sparsity_bf16_all",
               "sparsity_bf16_eligible", "untouched_share")


def run_record(run) -> dict:
    """What the report keeps of one run: identity, where it stopped, gain, KL to the base, regime numbers."""
    t, s = run.spec.train, run.summary
    r = s.get("regime", {})
    return {"run": run.directory.name, "method": t.method, "seed": t.seed, "lr": t.lr, "precision": t.precision,
            "optimizer": t.optimizer, "steps": s.get("stopped_at"), "reason": s.get("reason"), "gain": s.get("gain"),
            "kl_to_base": s.get("kl_to_base_final"), **{k: r.get(k) for k in REGIME_KEYS}}


def _median(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def regime_summary(records: list[dict]) -> dict:
    """Per method: the median over runs of steps, gain, KL to the base and every regime number."""
    out = {}
    for method in sorted({r["method"] for r in records}):
        rs = [r for r in records if r["method"] == method]
        out[method] = {"runs": len(rs), **{k: _median([r[k] for r in rs])
                                           for k in ("steps", "gain", "kl_to_base", "lr", *REGIME_KEYS)}}
    return out


def regime_text(summary: dict) -> str:
    """One line per verdict: 'rl: step 0.07, drift 3.7, walk 1.0, T 120, gain +0.10; sft: ...'."""
    parts = []
    for method, m in summary.items():
        f = lambda k, fmt=".2g": "?" if m.get(k) is None else format(m[k], fmt)  # noqa: E731
        parts.append(f"{method}: lr {f('lr')}, step ratio {f('step_ratio')}, drift ratio {f('drift_ratio')}, "
                     f"walk ratio {f('walk_ratio')}, T {f('steps', '.0f')}, gain {f('gain', '+.2f')}")
    return "; ".join(parts)
