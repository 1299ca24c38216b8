"""The one finisher every claim shares: a ``Measurement`` becomes the report's ``Verdict``.

It refuses a claim without both a positive and a negative control (a verdict that cannot flip is a
defect), saves the figures, notes where the runs stopped and whether they reached the matched point,
and attaches the regime numbers of every run the verdict rests on, so a verdict is never read apart
from the regime it was decided in (docs/science.md section 7).
"""

from __future__ import annotations

import numpy as np

from verify.figures.common import save_figure
from verify.regime_record import regime_summary, regime_text, run_record
from verify.registry import Claim, Measurement, Verdict


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
