"""The claims registry: each claim is a decision rule fixed in code, with controls, returning a Verdict.

A claim module in ``verify/claims/`` calls ``register(Claim(...))``; importing ``verify.claims``
loads them all, so adding a claim means adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from typing import Callable

REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
INCONCLUSIVE = "INCONCLUSIVE"
STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass
class Estimate:
    """A number measured over seeds: mean with a 95 % confidence interval and the per-seed values."""

    mean: float
    low: float
    high: float
    per_seed: list[float]

    def text(self, fmt: str = ".3g") -> str:
        if len(self.per_seed) < 2:
            return f"{self.mean:{fmt}}"
        return f"{self.mean:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


@dataclass
class Verdict:
    """What a claim check concluded, with the numbers that decided it."""

    claim_id: str
    status: str
    headline: str  # our number in one short string, e.g. "RL 0.71 [0.66, 0.75] vs SFT 0.12 [...]"
    numbers: dict[str, Estimate | float | str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)  # control name -> status it produced
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"Verdict status must be one of {STATUSES}, got {self.status!r}.")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """A testable claim: which paper claims it checks, the paper's number, the rule, and how to run it."""

    id: str
    paper_claims: tuple[str, ...]
    title: str
    paper_number: str
    rule: str
    run: Callable  # (Context) -> Verdict
    controls: tuple[str, ...] = ()


CLAIMS: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add ``claim`` to the registry (ids are unique)."""
    if claim.id in CLAIMS:
        raise ValueError(f"Claim id {claim.id!r} is registered twice.")
    CLAIMS[claim.id] = claim
    return claim


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
