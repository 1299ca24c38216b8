"""The claims registry: a claim is one decorated function with its decision rule and its runs declared.

    @claim("gate3.sparsity", paper=("C1", "C6"), title=..., paper_number=..., rule=...,
           runs=lambda p: [p.rl(s) for s in p.seeds] + [p.sft(s) for s in p.seeds])
    def sparsity(ctx) -> Measurement: ...

``runs`` states, as data, every fine-tuning run the claim reads (``verify.profiles.Profile`` builds the
typed ``RunSpec``s), so ``verify`` can gather the plan of a whole profile before anything trains. The
function then reads finished runs only and returns a typed ``Measurement`` with typed controls;
``verify.finish`` turns it into the ``Verdict`` of the report. Importing ``verify.claims`` loads every
claim module, so adding a claim means adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
INCONCLUSIVE = "INCONCLUSIVE"
STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


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


@dataclass(frozen=True)
class Control:
    """A control of a claim: a planted or swapped input on which the same decision rule must come out
    REPRODUCED (``positive``) or not REPRODUCED (``negative``)."""

    kind: Literal["positive", "negative"]
    name: str
    status: str

    def __post_init__(self):
        _check_status(self.status)

    @property
    def flips(self) -> bool:
        """True when the control came out the way it must (so the rule can flip)."""
        return (self.status == REPRODUCED) == (self.kind == "positive")


def positive(name: str, status: str) -> Control:
    """A positive control: must come out REPRODUCED."""
    return Control("positive", name, status)


def negative(name: str, status: str) -> Control:
    """A negative control: must not come out REPRODUCED."""
    return Control("negative", name, status)


@dataclass
class Measurement:
    """What a claim function returns: the status its rule gave, the numbers, the controls, the figures
    (matplotlib figures, unsaved), the runs it rests on (for stop notes and regime numbers) and notes."""

    status: str
    headline: str
    numbers: dict[str, Any]
    controls: list[Control]
    figures: list[Any] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        _check_status(self.status)


@dataclass
class Verdict:
    """What a claim check concluded, with the numbers that decided it (the report's row)."""

    claim_id: str
    status: str
    headline: str
    numbers: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)  # "positive: name" / "negative: name" -> status
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    regime: dict[str, Any] = field(default_factory=dict)  # per method: median regime numbers of the runs used
    runs: list[dict] = field(default_factory=list)  # every run used: its spec summary and regime numbers

    def __post_init__(self):
        _check_status(self.status)

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
    runs: Callable  # (Profile) -> list[RunSpec]
    measure: Callable  # (Context) -> Measurement
    sweep: bool = False  # a grid of many runs: left out of `all`, run by `sweeps` or `everything` or by id


CLAIMS: dict[str, Claim] = {}


def claim(claim_id: str, *, paper: tuple[str, ...], title: str, paper_number: str, rule: str, runs: Callable,
          sweep: bool = False):
    """Decorator: register the decorated ``(ctx) -> Measurement`` function as claim ``claim_id``; ``sweep``
    marks a claim whose runs are a grid (tens of runs per profile), which `all` leaves to `sweeps`."""

    def register(fn: Callable) -> Callable:
        if claim_id in CLAIMS:
            raise ValueError(f"Claim id {claim_id!r} is registered twice.")
        CLAIMS[claim_id] = Claim(claim_id, tuple(paper), title, paper_number, rule, runs, fn, sweep)
        return fn

    return register


SECTIONS: list[Callable] = []  # (list of (Claim, Verdict)) -> markdown text or "" for report.md


def report_section(fn: Callable) -> Callable:
    """Decorator: ``fn(results)`` adds a section to report.md written from the verdicts (empty text: none)."""
    SECTIONS.append(fn)
    return fn


def load_all() -> dict[str, Claim]:
    """Import every module of verify.claims and return the registry."""
    import verify.claims as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        importlib.import_module(f"verify.claims.{info.name}")
    return CLAIMS


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
