"""The claims registry: a claim is one decorated function with its decision rule and its runs declared.

    @claim("gate3.sparsity", paper=("C1", "C6"), title=..., paper_number=..., rule=..., runs=matched)
    def sparsity(ctx, runs: Matched) -> Measurement: ...

``runs`` maps a profile to the claim's run set (``verify.runsets``: a structure whose leaves are typed
``RunSpec``s, usually one of ``verify.experiments``), so ``verify`` can gather the plan of a whole profile
before anything trains. When the claim decides it receives the same structure with every leaf replaced by
its finished run (``Claim.evaluate``) and returns a typed ``Measurement`` with typed controls;
``verify.finish`` turns it into the ``Verdict`` of the report.

``CLAIM_MODULES`` names, for every claim id, the module under ``verify.claims`` that registers it, in the
order of the report: running one claim imports its module only; ``load_all`` (``list``, ``all``, the
groups) imports every one. A new claim is a function in a claim module plus one line in that table.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from verify.runsets import leaves

from verify.rules import (  # noqa: F401  (statuses re-exported for the claim modules)
    CHECK_STATUSES,
    CLAIM_STATUSES,
    CONTROL_FAILED,
    ERROR,
    FAIL,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    PASS,
    REPRODUCED,
    ControlResult,
    Outcome,
)

STATUSES = CLAIM_STATUSES + CHECK_STATUSES  # what a rule may return (CONTROL FAILED and ERROR: the finisher's)
KINDS = ("claim", "check")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"A status must be one of {STATUSES}, got {status!r}.")


@dataclass
class Estimate:
    """A number measured over seeds: mean with a 95 % confidence interval and the per-seed values."""

    mean: float
    low: float
    high: float
    per_seed: list[float]

    def text(self, fmt: str = ".3g") -> str:
        """'mean [low, high]' (the mean alone for fewer than two seeds)."""
        if len(self.per_seed) < 2:
            return f"{self.mean:{fmt}}"
        return f"{self.mean:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


Control = ControlResult  # a control's outcome: kind positive | negative | placebo, its name and status


def positive(name: str, status: str) -> Control:
    """A positive control (a planted effect): must come out REPRODUCED (claims) or PASS (checks)."""
    _check_status(status)
    return Control("positive", name, status)


def negative(name: str, status: str) -> Control:
    """A negative control (a run or null in which the effect is absent by construction): must not come out
    REPRODUCED or PASS."""
    _check_status(status)
    return Control("negative", name, status)


def placebo(name: str, status: str) -> Control:
    """A step-size placebo (the comparator role played by the same RL algorithm at the comparator's rate): must not
    come out REPRODUCED; if it does, the claim is explained by update size."""
    _check_status(status)
    return Control("placebo", name, status)


@dataclass
class Measurement:
    """What a claim function returns: the status its rule gave (REPRODUCED / NOT REPRODUCED / INCONCLUSIVE for a
    claim, PASS / FAIL for a check), the headline and numbers, the controls, the rule outcomes that decided it
    (``outcomes``) and the same rule on other inputs reported beside it (``descriptive``: e.g. SFT at its customary
    rate), qualifiers the claim computes (e.g. 'vacuous'), unsaved figures, the runs it rests on (a list, or
    {role: runs} so the report keeps matched runs, controls and placebos apart) and notes."""

    status: str
    headline: str
    numbers: dict[str, Any]
    controls: list[Control]
    figures: list[Any] = field(default_factory=list)
    runs: Any = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    descriptive: dict[str, Outcome] = field(default_factory=dict)
    qualifiers: tuple[str, ...] = ()

    def __post_init__(self):
        _check_status(self.status)


@dataclass
class Verdict:
    """What a claim or check concluded (the report's row): the final status after the controls (CONTROL FAILED
    when one did not come out the way it must, ERROR when the claim crashed), the rule's own status, the
    qualifiers of the verdict cell, the outcomes with their intervals, floors or margins and smallest detectable
    effects, the controls, regime numbers per role and every run used."""

    claim_id: str
    status: str
    headline: str
    kind: str = "claim"
    rule_status: str = ""
    qualifiers: list[str] = field(default_factory=list)
    control_failure: str = ""
    outcomes: dict[str, Any] = field(default_factory=dict)
    descriptive: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    controls: list[dict] = field(default_factory=list)  # {"kind", "name", "status", "holds"}
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    regime: dict[str, Any] = field(default_factory=dict)  # per role: median regime numbers of the runs used
    runs: list[dict] = field(default_factory=list)  # every run used: its spec summary, role and regime numbers
    error: str = ""

    def __post_init__(self):
        if self.status not in STATUSES + (CONTROL_FAILED, ERROR):
            raise ValueError(f"A verdict's status must be one of {STATUSES + (CONTROL_FAILED, ERROR)}, got {self.status!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"A verdict's kind must be one of {KINDS}, got {self.kind!r}.")

    @property
    def cell(self) -> str:
        """The verdict cell: status and qualifiers, e.g. 'INCONCLUSIVE (at the edge, underpowered)'."""
        return self.status + (f" ({', '.join(self.qualifiers)})" if self.qualifiers else "")

    def to_json(self) -> dict:
        """Plain-dict form for report.json."""
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """A testable claim: which paper claims it checks, the paper's number, the rule fixed before the run,
    the runs it needs (a function of the profile) and the function that measures and decides."""

    id: str
    paper_claims: tuple[str, ...]
    title: str
    paper_number: str
    rule: str
    runs: Callable  # (Profile) -> run set (verify.runsets)
    measure: Callable  # (Context, run set of finished runs) -> Measurement
    sweep: bool = False  # a grid of many runs: left out of `all`, run by `sweeps` or `everything` or by id
    kind: str = "claim"  # "claim" (REPRODUCED / NOT REPRODUCED / INCONCLUSIVE) or "check" (PASS / FAIL)

    def specs(self, profile) -> list:
        """Every RunSpec the claim reads on ``profile`` (the leaves of its run set), for the plan."""
        return leaves(self.runs(profile))

    def evaluate(self, ctx) -> Measurement:
        """Measure and decide on finished runs: the run set of ``ctx.profile`` with every leaf finished."""
        return self.measure(ctx, ctx.finished(self.runs(ctx.profile)))


CLAIM_MODULES: dict[str, str] = {  # claim id -> module of verify.claims that registers it, in report order
    "gate2.bounds": "gate2", "gate2.spectrum": "gate2", "gate2.principal_overlap": "gate2", "gate2.energy": "gate2",
    "gate2.curvature": "gate2",
    "adapters.grid": "adapters", "adapters.approximation": "adapters",
    "consistency.jaccard": "consistency", "consistency.stripes": "consistency", "consistency.temporal": "consistency",
    "geometry.intervention": "intervention",
    "masked.rl": "masked",
    "control.random_base": "control",
    "gate1.leash": "gate1", "gate1.fisher": "gate1", "gate1.clip_only": "gate1", "gate1.kl_to_base": "gate1",
    "gate1.weight_leash": "gate1",
    "gate3.sparsity": "gate3", "gate3.lr_sweep": "gate3", "gate3.probes": "gate3", "gate3.visibility": "gate3",
    "regime.predictor": "regime", "regime.phase": "regime_map", "regime.width": "regime_map",
    "regime.optimizer": "regime_map", "regime.magnitude": "regime",
    "preference.signatures": "preference",
    "forgetting.rl_vs_sft": "forgetting", "forgetting.predictor": "forgetting",
    "precision.fp16_export": "precision_export",
    "regime.ladder": "ladder",
}

CLAIMS: dict[str, Claim] = {}  # the claims registered so far (their modules imported)


def claim(claim_id: str, *, paper: tuple[str, ...], title: str, paper_number: str, rule: str, runs: Callable,
          sweep: bool = False, kind: str = "claim"):
    """Decorator: register the decorated ``(ctx, runs) -> Measurement`` function as claim ``claim_id``, which
    ``CLAIM_MODULES`` must name with the decorated function's module; ``sweep`` marks a claim whose runs are a
    grid (tens of runs per profile), which `all` leaves to `sweeps`; ``kind`` "check" marks a theorem, identity
    or instrument check (PASS / FAIL, never counted as reproducing the paper)."""
    if kind not in KINDS:
        raise ValueError(f"Claim {claim_id!r}: kind must be one of {KINDS}, got {kind!r}.")

    def register(fn: Callable) -> Callable:
        module = CLAIM_MODULES.get(claim_id)
        if module is None or fn.__module__ != f"verify.claims.{module}":
            raise ValueError(f"Claim {claim_id!r} (in {fn.__module__}) is not listed with its module in "
                             "verify.registry.CLAIM_MODULES.")
        if claim_id in CLAIMS:
            raise ValueError(f"Claim id {claim_id!r} is registered twice.")
        CLAIMS[claim_id] = Claim(claim_id, tuple(paper), title, paper_number, rule, runs, fn, sweep, kind)
        return fn

    return register


def load(ids) -> dict[str, Claim]:
    """The claims ``ids`` (ids of ``CLAIM_MODULES``), importing only their modules; in the order given."""
    for module in dict.fromkeys(CLAIM_MODULES[i] for i in ids):
        importlib.import_module(f"verify.claims.{module}")
    return {i: CLAIMS[i] for i in ids}


def load_all() -> dict[str, Claim]:
    """Every claim, all claim modules imported, in report order."""
    return load(list(CLAIM_MODULES))


SECTIONS: list[Callable] = []  # (list of (Claim, Verdict)) -> markdown text or "" for report.md


def report_section(fn: Callable) -> Callable:
    """Decorator: ``fn(results)`` adds a section to report.md written from the verdicts (empty text: none)."""
    SECTIONS.append(fn)
    return fn


def report_sections() -> list[Callable]:
    """The report sections of the claim modules imported so far, in the report order of their modules."""
    order = list(dict.fromkeys(f"verify.claims.{m}" for m in CLAIM_MODULES.values()))
    return sorted(SECTIONS, key=lambda fn: order.index(fn.__module__) if fn.__module__ in order else len(order))


def decide_positive(est: Estimate, null: float = 0.0) -> str:
    """REPRODUCED if the whole CI lies above ``null``, NOT REPRODUCED if it lies below, else INCONCLUSIVE."""
    if est.low > null:
        return REPRODUCED
    if est.high < null:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def decide_both(a: Estimate, b: Estimate) -> str:
    """REPRODUCED iff both estimates' CIs lie above 0; NOT REPRODUCED iff both lie below; else INCONCLUSIVE."""
    sa, sb = decide_positive(a), decide_positive(b)
    if sa == sb == REPRODUCED:
        return REPRODUCED
    if sa == sb == NOT_REPRODUCED:
        return NOT_REPRODUCED
    return INCONCLUSIVE
