"""The one finisher every claim shares: a ``Measurement`` becomes the report's ``Verdict``.

It refuses a claim without both a positive and a negative control (a verdict that cannot flip is a
defect), saves the figures, notes where the runs stopped and whether they reached the matched point,
and attaches the regime numbers of every run the verdict rests on, so a verdict is never read apart
from the regime it was decided in (docs/science.md section 7).
"""

from __future__ import annotations

import numpy as np

from verify.registry import Claim, Measurement, Verdict
from verify.report import save_figure

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


def stop_notes(runs) -> list[str]:
    """Where the matched runs stopped, per method, and which missed the target gain (stopped at the cap)."""
    notes = []
    matched = [r for r in runs if r.spec.train.target_gain is not None]
    for method in sorted({r.spec.train.method for r in matched}):
        rs = [r for r in matched if r.spec.train.method == method]
        notes.append(f"{method} runs stopped at {[r.summary['stopped_at'] for r in rs]} steps, gains "
                     f"{np.round([r.summary['gain'] for r in rs], 3).tolist()}.")
    missed = [f"{r.spec.train.method} seed {r.spec.train.seed}" for r in matched if r.summary.get("reason") != "target_gain"]
    if missed:
        notes.append("Not at the matched point (target gain not reached, stopped at max_steps): " + ", ".join(missed) + ".")
    return notes


def finish(claim: Claim, m: Measurement, ctx) -> Verdict:
    """Build the verdict of ``claim`` from its measurement: controls checked, figures saved, regime attached."""
    kinds = {c.kind for c in m.controls}
    if kinds != {"positive", "negative"}:
        raise ValueError(f"Claim {claim.id} must report at least one positive and one negative control, got {sorted(kinds)}.")
    figures = [save_figure(fig, ctx, claim.id if i == 0 else f"{claim.id}_{i + 1}") for i, fig in enumerate(m.figures)]
    unique = list({r.directory.name: r for r in m.runs}.values())
    records = [run_record(r) for r in unique]
    regime = regime_summary(records)
    notes = list(m.notes) + stop_notes(unique)
    if regime:
        notes.append("Regime of the runs used: " + regime_text(regime) + ".")
    return Verdict(claim.id, m.status, m.headline, numbers=m.numbers,
                   controls={f"{c.kind}: {c.name}": c.status for c in m.controls},
                   figures=figures, notes=notes, regime=regime, runs=records)
