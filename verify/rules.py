"""Pre-registered decision rules (docs/science.md, section 6 'Fair toy checks').

Every empirical claim is decided by a rule written before its runs: a statistic, the direction the paper
predicts, and either an effect-size *floor* (a statement of presence: "RL is sparser than SFT by at least
0.17") or an equivalence *margin* (a statement of absence: "the bias vanishes", "explained by the regime",
"tracks dense RL"), decided by two one-sided tests. Each threshold carries its source (the paper, a priori,
or set after a named earlier run).

- ``AtLeast(floor)``: REPRODUCED when the whole 95 % interval lies beyond the floor in the predicted
  direction, NOT REPRODUCED when it lies wholly on the other side of the floor, else INCONCLUSIVE. An
  interval that merely excludes 0 does not reproduce a claim whose floor it straddles.
- ``Within(margin)``: REPRODUCED (absence shown) when the 90 % interval lies inside (-margin, +margin),
  which is the two one-sided tests at the 5 % level; NOT REPRODUCED when the 95 % interval lies wholly
  outside the margin; else INCONCLUSIVE. An interval that merely contains 0 is not evidence of absence.

Qualifiers computed from the numbers go into the verdict cell: "at the edge" when the estimate sits within
one standard error of the rule's threshold, "underpowered" when an INCONCLUSIVE interval is too wide to
resolve the floor or margin at all, "no data" when there was nothing to decide on. Every outcome reports the
smallest effect its units (seeds, bins) can detect: the difference from 0 found with 80 % power by a two-sided
5 % t-test.

A *check* (a theorem, an identity, an instrument's soundness) is PASS / FAIL and never counts as
reproducing the paper. ``apply_controls`` is the one place that turns a verdict into CONTROL FAILED: a
positive control must come out affirmative (REPRODUCED or PASS), a negative control (a run or null in which
the effect is absent by construction) and a step-size placebo must not.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.weightstats import DescrStatsW

REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
INCONCLUSIVE = "INCONCLUSIVE"
PASS = "PASS"
FAIL = "FAIL"
CONTROL_FAILED = "CONTROL FAILED"
ERROR = "ERROR"
CLAIM_STATUSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
CHECK_STATUSES = (PASS, FAIL)
AT_THE_EDGE = "at the edge"
UNDERPOWERED = "underpowered"
NO_DATA = "no data"  # nothing to decide on (no finite unit): INCONCLUSIVE, neither edge nor power
POWER = 0.8  # power of the smallest detectable effect
SOURCES = ("paper", "a priori", "after run")  # a threshold's source starts with one of these


@dataclass(frozen=True)
class Interval:
    """A statistic over independent units (seeds, bins): mean, standard error, t degrees of freedom
    (``inf`` for a normal interval) and the per-unit values; 95 % and 90 % two-sided intervals."""

    mean: float
    se: float
    df: float
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, values) -> "Interval":
        """Student-t interval of the mean of per-unit values (NaN and None dropped; one value: zero width)."""
        v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
        if v.size == 0:
            return cls(float("nan"), float("nan"), float("nan"), ())
        if v.size == 1:
            return cls(float(v[0]), 0.0, 0.0, (float(v[0]),))
        d = DescrStatsW(v)
        return cls(float(d.mean), float(d.std_mean), float(v.size - 1), tuple(v.tolist()))

    @classmethod
    def pooled(cls, effects, variances) -> "Interval":
        """Random-effects (Paule-Mandel, between-unit variance >= 0) pooled mean of per-unit effects with known sampling variances,
        with the modified Knapp-Hartung t interval on k - 1 degrees of freedom (statsmodels ``combine_effects``):
        the between-unit spread widens the interval, so units that disagree in sign cannot look precise."""
        e, var = np.asarray(effects, np.float64), np.asarray(variances, np.float64)
        ok = np.isfinite(e) & np.isfinite(var)
        e, var = e[ok], np.maximum(var[ok], 1e-300)
        if e.size == 0:
            return cls(float("nan"), float("nan"), float("nan"), ())
        if e.size == 1:
            return cls(float(e[0]), float(math.sqrt(var[0])), float("inf"), (float(e[0]),))
        with warnings.catch_warnings():  # per-unit intervals (which we do not use) warn without sample sizes
            warnings.simplefilter("ignore")
            res = combine_effects(e, var, method_re="pm", use_t=True)
        # modified Knapp-Hartung: never narrower than the plain random-effects error (units that agree more
        # closely than their own variances allow must not shrink the interval below what those variances give)
        se = max(float(res.sd_eff_w_re), float(res.sd_eff_w_re_hksj))
        return cls(float(res.mean_effect_re), se, float(e.size - 1), tuple(e.tolist()))

    @property
    def n(self) -> int:
        """Number of units."""
        return len(self.values)

    def half_width(self, level: float = 0.95) -> float:
        """Half-width of the two-sided interval at ``level`` (0 for one unit, NaN when empty)."""
        if not math.isfinite(self.mean):
            return float("nan")
        if self.se == 0.0:
            return 0.0
        q = stats.norm.ppf(0.5 + level / 2) if math.isinf(self.df) else stats.t.ppf(0.5 + level / 2, self.df)
        return float(q * self.se)

    def bounds(self, level: float = 0.95) -> tuple[float, float]:
        """(low, high) of the two-sided interval at ``level``."""
        h = self.half_width(level)
        return self.mean - h, self.mean + h

    def detectable(self, power: float = POWER, alpha: float = 0.05) -> float:
        """Smallest true effect a two-sided ``alpha`` t-test on these units finds with ``power``:
        (t_{1-alpha/2} + t_{power}) x standard error (NaN with fewer than two units)."""
        if self.n < 2 or not math.isfinite(self.se):
            return float("nan")
        dist = stats.norm if math.isinf(self.df) else stats.t(self.df)
        return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * self.se)

    def text(self, fmt: str = ".3g") -> str:
        """'mean [low, high]' at 95 % (the mean alone for one unit)."""
        if self.n < 2:
            return format(self.mean, fmt)
        lo, hi = self.bounds()
        return f"{self.mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    def to_json(self) -> dict:
        """Plain-dict form: mean, 95 % bounds, standard error, degrees of freedom, per-unit values."""
        lo, hi = self.bounds()
        return {"mean": self.mean, "low": lo, "high": hi, "se": self.se,
                "df": None if math.isinf(self.df) else self.df, "values": list(self.values)}


def _check_source(source: str) -> None:
    if not source.startswith(SOURCES):
        raise ValueError(f"A threshold's source must start with one of {SOURCES}, got {source!r}.")


@dataclass(frozen=True)
class Outcome:
    """What a rule concluded: status, qualifiers, the statistic's interval, the threshold and its source, and
    the smallest effect the units can detect."""

    status: str
    statistic: str
    interval: Interval
    kind: str  # "floor" | "margin" | "check"
    threshold: float
    source: str
    qualifiers: tuple[str, ...] = ()
    detectable: float = float("nan")

    @property
    def cell(self) -> str:
        """The verdict cell: status with its qualifiers, e.g. 'INCONCLUSIVE (at the edge, underpowered)'."""
        return self.status + (f" ({', '.join(self.qualifiers)})" if self.qualifiers else "")

    def to_json(self) -> dict:
        """Plain-dict form for report.json."""
        return {"status": self.status, "qualifiers": list(self.qualifiers), "statistic": self.statistic,
                "interval": self.interval.to_json(), "kind": self.kind, "threshold": self.threshold,
                "source": self.source, "detectable_effect": self.detectable}


def _qualifiers(status: str, interval: Interval, threshold: float, resolution: float, scale: float) -> tuple[str, ...]:
    if interval.n == 0:
        return (NO_DATA,)
    out = []
    if interval.n >= 2 and abs(interval.mean - threshold) <= interval.se:
        out.append(AT_THE_EDGE)
    if status == INCONCLUSIVE and not resolution < scale:
        out.append(UNDERPOWERED)
    return tuple(out)


@dataclass(frozen=True)
class AtLeast:
    """Presence: the statistic lies beyond ``floor`` in ``direction`` (+1: above, -1: below). Decided on the
    95 % interval: wholly beyond the floor -> REPRODUCED; wholly on the other side -> NOT REPRODUCED; else
    INCONCLUSIVE ('underpowered' when its half-width is at least the floor's distance from 0)."""

    statistic: str
    floor: float
    source: str
    direction: int = +1

    def __post_init__(self):
        _check_source(self.source)
        if self.direction not in (+1, -1):
            raise ValueError(f"AtLeast.direction must be +1 or -1, got {self.direction}.")

    @property
    def text(self) -> str:
        """The rule in words, for the report."""
        side = ">" if self.direction > 0 else "<"
        return f"{self.statistic}: 95 % interval wholly {side} {self.floor:g} (floor, {self.source})"

    def decide(self, interval: Interval) -> Outcome:
        """The outcome on ``interval`` (NaN or empty -> INCONCLUSIVE)."""
        lo, hi = interval.bounds(0.95)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            status = INCONCLUSIVE
        else:
            a, b = sorted((self.direction * (lo - self.floor), self.direction * (hi - self.floor)))
            status = REPRODUCED if a > 0 else NOT_REPRODUCED if b < 0 else INCONCLUSIVE
        quals = _qualifiers(status, interval, self.floor, interval.half_width(0.95), abs(self.floor))
        return Outcome(status, self.statistic, interval, "floor", self.floor, self.source, quals, interval.detectable())


@dataclass(frozen=True)
class Within:
    """Absence: |statistic| < ``margin``, by two one-sided tests (90 % interval inside the margins) ->
    REPRODUCED; the 95 % interval wholly outside the margins -> NOT REPRODUCED; else INCONCLUSIVE
    ('underpowered' when the 90 % half-width is at least the margin: no mean could pass)."""

    statistic: str
    margin: float
    source: str

    def __post_init__(self):
        _check_source(self.source)
        if not self.margin > 0:
            raise ValueError(f"Within.margin must be positive, got {self.margin}.")

    @property
    def text(self) -> str:
        """The rule in words, for the report."""
        return f"{self.statistic}: 90 % interval inside +-{self.margin:g} (equivalence margin, {self.source})"

    def decide(self, interval: Interval) -> Outcome:
        """The outcome on ``interval`` (NaN or empty -> INCONCLUSIVE)."""
        lo90, hi90 = interval.bounds(0.90)
        lo, hi = interval.bounds(0.95)
        if not all(math.isfinite(x) for x in (lo, hi, lo90, hi90)):
            status = INCONCLUSIVE
        elif -self.margin < lo90 and hi90 < self.margin:
            status = REPRODUCED
        elif lo >= self.margin or hi <= -self.margin:
            status = NOT_REPRODUCED
        else:
            status = INCONCLUSIVE
        edge = self.margin if interval.mean >= 0 else -self.margin
        quals = _qualifiers(status, interval, edge, interval.half_width(0.90), self.margin)
        return Outcome(status, self.statistic, interval, "margin", self.margin, self.source, quals, interval.detectable())


def check(statistic: str, ok: bool, value: float = float("nan")) -> Outcome:
    """A check (theorem, identity, instrument soundness): PASS or FAIL, never a claim status."""
    return Outcome(PASS if ok else FAIL, statistic, Interval(float(value), 0.0, 0.0, (float(value),)), "check",
                   float("nan"), "a priori")


def all_of(*outcomes: Outcome) -> str:
    """Status of a claim that needs every part: REPRODUCED when all are, NOT REPRODUCED when any is NOT
    REPRODUCED, else INCONCLUSIVE."""
    statuses = [o.status for o in outcomes]
    if statuses and all(s == REPRODUCED for s in statuses):
        return REPRODUCED
    if any(s == NOT_REPRODUCED for s in statuses):
        return NOT_REPRODUCED
    return INCONCLUSIVE


AFFIRMATIVE = (REPRODUCED, PASS)
CONTROL_KINDS = ("positive", "negative", "placebo")


@dataclass(frozen=True)
class ControlResult:
    """A control's outcome: ``positive`` must come out affirmative (REPRODUCED / PASS); ``negative`` (a run or
    null with the effect absent by construction) and ``placebo`` (the other method's role played by the
    same method at the other step size) must not."""

    kind: str
    name: str
    status: str

    def __post_init__(self):
        if self.kind not in CONTROL_KINDS:
            raise ValueError(f"A control's kind must be one of {CONTROL_KINDS}, got {self.kind!r}.")

    @property
    def holds(self) -> bool:
        """True when the control came out the way it must."""
        return (self.status in AFFIRMATIVE) == (self.kind == "positive")


@dataclass(frozen=True)
class Decision:
    """The finisher's decision: the final status and, when a control failed, which and what that means."""

    status: str
    rule_status: str
    failed: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""


def apply_controls(rule_status: str, controls) -> Decision:
    """CONTROL FAILED when any control did not come out the way it must, naming it; a step-size placebo that
    reproduces reads 'explained by update size'. A claim or check without a positive and a negative (or placebo)
    control is refused: a verdict that cannot flip is a defect."""
    controls = list(controls)
    kinds = {c.kind for c in controls}
    if "positive" not in kinds or not kinds & {"negative", "placebo"}:
        raise ValueError(f"A result needs a positive and a negative (or placebo) control, got {sorted(kinds)}.")
    failed = [c for c in controls if not c.holds]
    if not failed:
        return Decision(rule_status, rule_status)
    reasons = []
    for c in failed:
        if c.kind == "placebo":
            reasons.append(f"placebo '{c.name}' reads {c.status}: explained by update size")
        elif c.kind == "negative":
            reasons.append(f"negative control '{c.name}' reads {c.status}")
        else:
            reasons.append(f"positive control '{c.name}' reads {c.status}")
    return Decision(CONTROL_FAILED, rule_status, tuple(c.name for c in failed), "; ".join(reasons))
