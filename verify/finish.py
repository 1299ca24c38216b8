"""The one finisher every claim shares: a ``Measurement`` becomes the report's ``Verdict``.

It checks that a claim returns a claim status and a check a check status, and decides the controls in one place
(``verify.rules.apply_controls``): a verdict whose positive control does not come out affirmative, or whose
negative control or step-size placebo does, becomes CONTROL FAILED and says which (a placebo that reproduces:
"explained by update size"); a result without a positive and a negative (or placebo) control is refused, since a
verdict that cannot flip is a defect. It collects the qualifiers of the verdict cell, saves the figures, notes
where the runs stopped and whether they reached the matched point, and attaches the regime numbers of every run
the verdict rests on, per role, so a verdict is never read apart from the regime it was decided in
(docs/science.md sections 6 and 7).
"""

from __future__ import annotations

import numpy as np

from verify.figures.common import save_figure
from verify.regime_record import regime_summary, regime_text, run_records
from verify.registry import CHECK_STATUSES, CLAIM_STATUSES, Claim, Measurement, Verdict
from verify.rules import INCONCLUSIVE, UNDERPOWERED, apply_controls


def stop_notes(records: list[dict]) -> list[str]:
    """Where the matched runs stopped, per role, and which missed the target gain (stopped at the cap)."""
    notes = []
    matched = [r for r in records if r["reason"] in ("target_gain", "max_steps") and r.get("target_gain") is not None]
    for role in dict.fromkeys(r["role"] for r in matched):
        rs = [r for r in matched if r["role"] == role]
        notes.append(f"{role} runs stopped at {[r['steps'] for r in rs]} steps, gains "
                     f"{np.round([r['gain'] for r in rs], 3).tolist()}.")
    missed = [f"{r['role']} seed {r['seed']}" for r in matched if r["reason"] != "target_gain"]
    if missed:
        notes.append("Not at the matched point (target gain not reached, stopped at max_steps): " + ", ".join(missed) + ".")
    return notes


def qualifiers(m: Measurement, status: str) -> list[str]:
    """The qualifiers of the verdict cell: those of the deciding outcomes ('underpowered' only while the verdict is
    INCONCLUSIVE) and those the claim computed, each once, in order."""
    out = [q for o in m.outcomes.values() for q in o.qualifiers if q != UNDERPOWERED or status == INCONCLUSIVE]
    return list(dict.fromkeys(out + list(m.qualifiers)))


def finish(claim: Claim, m: Measurement, ctx) -> Verdict:
    """Build the verdict of ``claim`` from its measurement: status kind checked, controls decided, qualifiers,
    figures saved, regime attached."""
    allowed = CHECK_STATUSES if claim.kind == "check" else CLAIM_STATUSES
    if m.status not in allowed:
        raise ValueError(f"{claim.kind.capitalize()} {claim.id} returned {m.status!r}; a {claim.kind} reads one of {allowed}.")
    decision = apply_controls(m.status, m.controls)
    figures = [save_figure(fig, ctx, claim.id if i == 0 else f"{claim.id}_{i + 1}") for i, fig in enumerate(m.figures)]
    records = run_records(m.runs)
    regime = regime_summary(records)
    notes = list(m.notes) + stop_notes(records)
    if regime:
        notes.append("Regime of the runs used: " + regime_text(regime) + ".")
    return Verdict(claim.id, decision.status, m.headline, kind=claim.kind, rule_status=m.status,
                   qualifiers=qualifiers(m, m.status), control_failure=decision.reason,
                   outcomes={k: o.to_json() for k, o in m.outcomes.items()},
                   descriptive={k: o.to_json() for k, o in m.descriptive.items()}, numbers=m.numbers,
                   controls=[{"kind": c.kind, "name": c.name, "status": c.status, "holds": c.holds} for c in m.controls],
                   figures=figures, notes=notes, regime=regime, runs=records)
