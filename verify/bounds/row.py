"""One row of the `python -m verify theory` table: a bound evaluated on many instances."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BoundRow:
    """A bound checked on ``instances`` generated cases.

    ``ratios`` holds lhs / rhs per instance (<= 1 means the bound held; close to 1 means tight).
    ``must_hold`` is True for proven statements (a violation makes the command fail) and False for
    statements the suite only measures (the paper's unperturbed-gap Wedin form, the half-ULP rule).
    ``finding`` is one sentence of measured result printed under the table, or empty.
    """

    name: str
    statement: str
    must_hold: bool
    ratios: np.ndarray
    violations: int
    finding: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_sides(cls, name: str, statement: str, must_hold: bool, lhs, rhs, finding: str = "",
                   rtol: float = 1e-6, atol: float = 1e-9, **extra) -> "BoundRow":
        """The row of a bound lhs <= rhs evaluated per instance: ratios and violations computed here."""
        return cls(name, statement, must_hold, ratios(lhs, rhs), count_violations(lhs, rhs, rtol, atol), finding, dict(extra))

    @property
    def instances(self) -> int:
        return int(np.size(self.ratios))

    @property
    def median_tightness(self) -> float:
        return float(np.median(self.ratios)) if self.instances else float("nan")

    @property
    def worst_tightness(self) -> float:
        return float(np.max(self.ratios)) if self.instances else float("nan")


def count_violations(lhs, rhs, rtol: float = 1e-6, atol: float = 1e-9) -> int:
    """Instances with lhs > rhs beyond float round-off (rtol relative plus atol absolute)."""
    lhs = np.asarray(lhs, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    return int(np.sum(lhs > rhs * (1 + rtol) + atol))


def ratios(lhs, rhs) -> np.ndarray:
    """lhs / rhs with 0/0 read as 0 (a bound met with equality at zero is not a violation)."""
    lhs = np.asarray(lhs, dtype=np.float64)
    rhs = np.asarray(rhs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(rhs > 0, lhs / np.where(rhs > 0, rhs, 1.0), np.where(lhs > 0, np.inf, 0.0))
    return r
