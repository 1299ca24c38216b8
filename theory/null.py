"""Magnitude-matched null of a bf16 changed mask (docs/science.md claims C1, C3, C4, C11 against rounding).

Statement. Large weights have large bf16 ULPs, so a drift of a given size changes them less often. Any
overlap of the changed set with a region that correlates with |w0| (the principal mask, the
low-magnitude mask, rows of large weights, another run's changed set) therefore moves away from its
random level without any geometry. The null here keeps exactly that mechanism and nothing else:

- strata: equal-ULP strata of |w0|, one per bf16 binade (zero, subnormals and the lowest normal binade
  share the spacing 2^-133 and form one stratum); the same levels as ``theory.precision.half_ulp_bf16``;
- drift model: within stratum s every weight drifts by an independent d ~ N(0, sigma_s^2) and the export
  is bf16(w0 + d); the weight counts as changed iff that differs from bf16(w0) (the relative probe);
- fit: sigma_s is chosen so that the expected changed share in stratum s equals the observed one.

Exact expectation. A stored value v has a rounding interval [v - g_below / 2, v + g_above / 2] (half the
gaps to its neighbours); d leaves it with probability Phi(-L / sigma) + Phi(-U / sigma), L and U the
distances from w0 to the two ends (ties have probability 0). Inside a binade every bf16 value but a
power of two has g_below = g_above = ULP, so this probability is the same erfc(h / (sigma sqrt 2)) for all
of them (h = ULP / 2); a power of two 2^e (normal, e > -126) has the half-size gap below and probability
(erfc(h / (2 sigma sqrt 2)) + erfc(h / (sigma sqrt 2))) / 2. The expected share of a stratum is the
count-weighted mean over the stored values it holds, so it is exact whatever the distribution of the
weights over the binade; sigma_s solves it (``scipy.optimize.brentq`` on log sigma). Hence the null's
expected changed share equals the observed one stratum by stratum, by construction. The same drift then
predicts an fp16 export (distances to the fp16 rounding interval of fp16(w0)): the precision counterfactual.
The fp16 prediction cannot use the per-stratum fit where it matters most: a stratum of large weights where
no bf16 change showed has sigma_s = 0 (right for the null: it only bounds the drift from above), yet an fp16
export, 8 times finer, would show the drift there. The prediction therefore uses one drift for all strata,
the maximum-likelihood sigma of the stratum counts (binomial in each stratum with its exact mean
probability): the drift is taken as independent of |w0| (docs/science.md section 7, regime assumption 3).
Its range adds the uncertainty of that sigma (log sigma drawn from its Fisher-information normal law) to the
binomial draws.

Draws. Given the fit, weights change independently with their probability, so every count the analyzer
uses is a sum of binomials over cells of equal probability: draws cost O(cells), not O(weights). A
statistic that is a ratio of counts (changed share, overlap |C & R| / |C|, Jaccard, share of an early
set kept) is a ``RatioNull``: observed counts, expected counts under the null (its "null" value is the
ratio of expectations) and independent draws (its range is the central ``level`` share of the drawn
ratios). The excess is observed - null, and its range observed - (draw range): it contains 0 iff the
observed value lies inside the central range of the null ("explained by magnitude"). Ratios pool over
tensors by adding counts and draws (``+``). Row/column stripe statistics are ``ValueNull``.

Two entry points share every formula: ``magnitude_null`` / ``runs_null`` take arrays (toy claims);
``magnitude_null_from_counts`` / ``runs_null_from_counts`` take the histograms a streaming reader
accumulates (the real-checkpoint analyzer). Given equal histograms and the same generator (``null_rng``)
they return equal results. Pure numpy / scipy, no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.special

from theory import precision as P

MAGNITUDES = 0x7F80
"""Number of finite bf16 magnitude bit patterns (sign cleared): 0 .. 0x7F7F; histograms have this length."""
DRAWS = 200
"""Default number of independent null draws."""
LEVEL = 0.95
"""Default central share of the null draws reported as the null's range."""
MAX_JOINT_RUNS = 10
"""``runs_null`` draws the 2^R joint change patterns of R runs per cell; beyond this many runs it refuses."""

_FORMATS = {"bf16": (P.BF16, MAGNITUDES), "fp16": (np.float16, 0x7C00)}


# ----------------------------------------------------------------------------------------------
# magnitudes, strata, rounding intervals


def magnitude_bits(w) -> np.ndarray:
    """uint16 magnitude bit pattern (sign cleared) of each stored value bf16(w); bf16 inputs are read as they are."""
    a = np.asarray(w)
    b = a if a.dtype == P.BF16 else P.to_bf16(a)
    return b.view(np.uint16) & np.uint16(0x7FFF)


def magnitude_counts(w0, mask=None) -> np.ndarray:
    """Histogram (length ``MAGNITUDES``, int64) of the magnitude bit patterns of bf16(w0), over ``mask`` when given."""
    bits = magnitude_bits(w0).ravel()
    if mask is not None:
        bits = bits[np.asarray(mask, bool).ravel()]
    if bits.size and int(bits.max()) >= MAGNITUDES:
        raise ValueError("Argument `w0` holds NaN or infinite values.")
    return np.bincount(bits, minlength=MAGNITUDES).astype(np.int64)


def _grid(fmt: str) -> np.ndarray:
    dtype, n = _FORMATS[fmt]
    return np.arange(n, dtype=np.uint16).view(dtype).astype(np.float64)


def rounding_distances(a, fmt: str = "bf16") -> tuple[np.ndarray, np.ndarray]:
    """(L, U): distances from magnitudes ``a`` >= 0 down and up to the ends of the rounding interval of fmt(a).

    fmt is "bf16" or "fp16". The interval of a stored value v runs from halfway to its lower neighbour (for
    v = 0: to -smallest subnormal) to halfway to its upper neighbour (for the largest finite value: the
    overflow threshold); a value that overflows has L = a - threshold and U = inf. A drift d leaves the
    interval iff d < -L or d > U (a tie exactly at an end has probability 0 under a continuous drift).
    """
    a = np.asarray(a, np.float64)
    grid = _grid(fmt)
    top = grid[-1] + (grid[-1] - grid[-2]) / 2  # overflow threshold
    v = (P.to_bf16(a) if fmt == "bf16" else P.to_fp16(a)).view(np.uint16).astype(np.int64) & 0x7FFF
    over = v >= grid.size
    vi = np.minimum(v, grid.size - 1)
    val = grid[vi]
    below = np.where(vi > 0, grid[np.maximum(vi - 1, 0)], -grid[1])
    above = np.where(vi < grid.size - 1, grid[np.minimum(vi + 1, grid.size - 1)], 2 * top - grid[-1])
    lo = np.where(over, top, (val + below) / 2)
    hi = np.where(over, np.inf, (val + above) / 2)
    return a - lo, hi - a


def change_probability(L, U, sigma) -> np.ndarray:
    """P(d < -L or d > U) for d ~ N(0, sigma^2): (erfc(L / (sigma sqrt 2)) + erfc(U / (sigma sqrt 2))) / 2.

    sigma = 0 gives 0 (no drift), sigma = inf gives 1/2 per finite end; broadcasts."""
    L, U, s = np.broadcast_arrays(np.asarray(L, np.float64), np.asarray(U, np.float64), np.asarray(sigma, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 0.5 * scipy.special.erfc(L / (s * np.sqrt(2))) + 0.5 * scipy.special.erfc(U / (s * np.sqrt(2)))
    p = np.where(s == 0, 0.0, p)
    return np.where(np.isinf(s), 0.5 * np.isfinite(L) + 0.5 * np.isfinite(U), p)


_VALUES = _grid("bf16")  # every finite bf16 magnitude, indexed by its bit pattern
_HALF_ULP = P.half_ulp_bf16(_VALUES)  # its stratum level
_LB, _UB = rounding_distances(_VALUES, "bf16")
_L16, _U16 = rounding_distances(_VALUES, "fp16")


# ----------------------------------------------------------------------------------------------
# the fit


@dataclass(frozen=True)
class DriftFit:
    """Per-stratum Gaussian drift fitted to observed changed shares (module docstring).

    ``half_ulp`` (S,): bf16 half-ULP of each stratum present, increasing; ``n`` / ``changed`` (S,): weights and
    observed changed weights per stratum; ``sigma`` (S,): fitted drift RMS (0 where nothing changed, inf where
    everything changed); ``p_bf16`` (MAGNITUDES,): change probability of a weight with each magnitude bit pattern
    under the per-stratum fit (0 for patterns in no stratum present); ``pooled_sigma`` and ``pooled_log_sd``: the
    single maximum-likelihood drift over all strata and the standard error of its log (the fp16 prediction's
    drift; 0 / inf with sd 0 when nothing / everything changed); ``p_fp16`` (MAGNITUDES,): fp16-export change
    probability at ``pooled_sigma``."""

    half_ulp: np.ndarray
    n: np.ndarray
    changed: np.ndarray
    sigma: np.ndarray
    p_bf16: np.ndarray
    pooled_sigma: float
    pooled_log_sd: float
    p_fp16: np.ndarray

    def sigma_in_half_ulps(self) -> np.ndarray:
        """sigma_s / h_s per stratum: the drift in units of the stratum's visibility threshold."""
        return self.sigma / self.half_ulp


def _counts(name: str, c) -> np.ndarray:
    a = np.asarray(c)
    if a.shape != (MAGNITUDES,) or not np.issubdtype(a.dtype, np.integer) or np.any(a < 0):
        raise ValueError(f"Argument `{name}` must be a non-negative integer histogram of length {MAGNITUDES} (magnitude_counts).")
    return a.astype(np.int64)


def fit_drift(counts, changed_counts) -> DriftFit:
    """Fit sigma_s in every stratum so that the expected bf16-changed share equals the observed one.

    ``counts`` and ``changed_counts``: ``magnitude_counts`` of the base and of its changed entries
    (changed_counts <= counts). Expected share of stratum s at sigma: sum_b n_b P_b(sigma) / n_s over its
    magnitude patterns b (``change_probability`` with the bf16 ``rounding_distances``), solved by brentq on
    log sigma to 1e-13; shares 0 and 1 give sigma = 0 and inf."""
    n_b = _counts("counts", counts)
    c_b = _counts("changed_counts", changed_counts)
    if np.any(c_b > n_b):
        raise ValueError("Argument `changed_counts` exceeds `counts` for some magnitude; pass the histogram of a subset.")
    LB, UB, L16, U16 = _LB, _UB, _L16, _U16
    present = np.flatnonzero(n_b)
    levels = np.unique(_HALF_ULP[present])
    p_bf16 = np.zeros(MAGNITUDES)
    p_fp16 = np.zeros(MAGNITUDES)
    n_s = np.zeros(levels.size, np.int64)
    c_s = np.zeros(levels.size, np.int64)
    sigma = np.zeros(levels.size)
    stratum_of = np.searchsorted(levels, _HALF_ULP[present])
    for s, h in enumerate(levels):
        b = present[stratum_of == s]
        n_s[s], c_s[s] = n_b[b].sum(), c_b[b].sum()
        target = c_s[s] / n_s[s]
        if c_s[s] == 0:
            sig = 0.0
        elif c_s[s] == n_s[s]:
            sig = np.inf
        else:
            w = n_b[b] / n_s[s]
            f = lambda t: float(np.dot(w, change_probability(LB[b], UB[b], np.exp(t)))) - target  # noqa: E731
            lo, hi = np.log(h) - 60.0, np.log(h) + 60.0
            sig = float(np.exp(scipy.optimize.brentq(f, lo, hi, xtol=1e-13, rtol=1e-13, maxiter=500)))
        sigma[s] = sig
        p_bf16[b] = change_probability(LB[b], UB[b], sig)
    pooled, log_sd = _pooled_drift(n_b, present, stratum_of, n_s, c_s, levels)
    p_fp16[present] = change_probability(L16[present], U16[present], pooled)
    return DriftFit(levels, n_s, c_s, sigma, p_bf16, pooled, log_sd, p_fp16)


def _stratum_probabilities(n_b, present, stratum_of, n_s, log_sigma: np.ndarray) -> np.ndarray:
    """(len(log_sigma), S) mean bf16 change probability of each stratum at each drift."""
    sig = np.exp(np.asarray(log_sigma, np.float64))[:, None]
    p = change_probability(_LB[present][None, :], _UB[present][None, :], sig)  # (D, patterns)
    weights = np.zeros((present.size, n_s.size))
    weights[np.arange(present.size), stratum_of] = n_b[present] / n_s[stratum_of]
    return p @ weights


def _pooled_drift(n_b, present, stratum_of, n_s, c_s, levels) -> tuple[float, float]:
    """Maximum-likelihood single drift sigma over strata (binomial counts), and the standard error of log sigma
    from the observed information (second difference of the log-likelihood)."""
    if c_s.sum() == 0:
        return 0.0, 0.0
    if np.all(c_s == n_s):
        return float("inf"), 0.0

    def nlls(ts):
        p = np.clip(_stratum_probabilities(n_b, present, stratum_of, n_s, np.atleast_1d(ts)), 1e-300, 1 - 1e-16)
        return -np.sum(c_s * np.log(p) + (n_s - c_s) * np.log1p(-p), axis=1)

    nll = lambda t: float(nlls(t)[0])  # noqa: E731
    lo, hi = float(np.log(levels.min())) - 40.0, float(np.log(levels.max())) + 40.0
    grid = np.linspace(lo, hi, 161)
    start = grid[int(np.argmin(nlls(grid)))]
    res = scipy.optimize.minimize_scalar(nll, bounds=(start - 0.6, start + 0.6), method="bounded", options={"xatol": 1e-10})
    t, e = float(res.x), 1e-3
    curv = (nll(t + e) - 2 * nll(t) + nll(t - e)) / e**2
    return float(np.exp(t)), float(1 / np.sqrt(curv)) if curv > 0 else float("inf")


# ----------------------------------------------------------------------------------------------
# statistics against the null


def _range(x: np.ndarray, level: float) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return float("nan"), float("nan")
    q = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
    return float(q[0]), float(q[1])


@dataclass(frozen=True)
class ValueNull:
    """An observed statistic, its expectation under the null and independent null draws of it."""

    observed: float
    null: float
    draws: np.ndarray

    @property
    def excess(self) -> float:
        """observed - null."""
        return self.observed - self.null

    def null_range(self, level: float = LEVEL) -> tuple[float, float]:
        """Central ``level`` share of the null draws."""
        return _range(self.draws, level)

    def excess_range(self, level: float = LEVEL) -> tuple[float, float]:
        """observed minus the null range (reversed): contains 0 iff the observed value lies inside the null range."""
        lo, hi = self.null_range(level)
        return self.observed - hi, self.observed - lo

    def beyond_null(self, level: float = LEVEL) -> bool | None:
        """True when the excess range excludes 0 (the statistic is not explained by the null); None if undefined."""
        lo, hi = self.excess_range(level)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return None
        return not (lo <= 0.0 <= hi)

    def summary(self, level: float = LEVEL) -> dict:
        """{observed, null, null_low, null_high, excess, excess_low, excess_high, beyond_null} (floats, NaN if undefined)."""
        nl, nh = self.null_range(level)
        el, eh = self.excess_range(level)
        return {"observed": float(self.observed), "null": float(self.null), "null_low": nl, "null_high": nh,
                "excess": float(self.excess), "excess_low": el, "excess_high": eh, "beyond_null": self.beyond_null(level)}

    @staticmethod
    def mean(items: Sequence["ValueNull"]) -> "ValueNull":
        """The mean statistic over several independent items (draw by draw)."""
        items = [i for i in items if np.isfinite(i.observed)]
        if not items:
            return ValueNull(float("nan"), float("nan"), np.full(1, np.nan))
        return ValueNull(float(np.mean([i.observed for i in items])), float(np.mean([i.null for i in items])),
                         np.mean([i.draws for i in items], axis=0))


def _ratio(num, den):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class RatioNull:
    """A ratio of counts observed against the null: observed and expected counts, and drawn counts."""

    observed_num: float
    observed_den: float
    expected_num: float
    expected_den: float
    draws_num: np.ndarray
    draws_den: np.ndarray

    def value(self) -> ValueNull:
        """As a ``ValueNull``: observed ratio, ratio of expected counts, drawn ratios."""
        return ValueNull(float(_ratio(self.observed_num, self.observed_den)), float(_ratio(self.expected_num, self.expected_den)),
                         _ratio(self.draws_num, self.draws_den))

    def summary(self, level: float = LEVEL) -> dict:
        """``ValueNull.summary`` of the ratio."""
        return self.value().summary(level)

    def __add__(self, other: "RatioNull") -> "RatioNull":
        """Pool two independent ratios (tensors): counts and draws add."""
        return RatioNull(self.observed_num + other.observed_num, self.observed_den + other.observed_den,
                         self.expected_num + other.expected_num, self.expected_den + other.expected_den,
                         self.draws_num + other.draws_num, self.draws_den + other.draws_den)


def _cells(p: np.ndarray, counts: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Group the present magnitude patterns by equal probability row: (cell probabilities, summed counts...)."""
    present = np.flatnonzero(counts)
    rows = p[present] if p.ndim == 2 else p[present][:, None]
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    inv = inv.ravel()
    sums = [np.bincount(inv, weights=c[present], minlength=len(uniq)).round().astype(np.int64) for c in (counts, *others)]
    return (uniq if p.ndim == 2 else uniq[:, 0], *sums)


def _binomial_sum(n: np.ndarray, p: np.ndarray, draws: int, rng) -> np.ndarray:
    """(draws,) sums over cells of independent Binomial(n_g, p_g)."""
    if not n.size:
        return np.zeros(draws)
    return rng.binomial(n[None, :], p[None, :], size=(draws, n.size)).sum(axis=1).astype(np.float64)


def share_null(p: np.ndarray, counts, observed: float, *, draws: int = DRAWS, rng=None) -> RatioNull:
    """Share of a fixed set (histogram ``counts``) that changes under per-pattern probabilities ``p`` (MAGNITUDES,).

    Numerator: observed changed count in the set (``observed``; NaN when unknown) and Binomial draws;
    denominator: the set's size (constant). Used for the changed share, an fp16 export's share and the
    share of an early changed set kept at the end (C4)."""
    rng = rng if rng is not None else np.random.default_rng()
    c = _counts("counts", counts)
    pc, nc = _cells(np.asarray(p, np.float64), c)
    size = float(c.sum())
    return RatioNull(float(observed), size, float(np.dot(nc, pc)), size, _binomial_sum(nc, pc, draws, rng), np.full(draws, size))


def overlap_null(p: np.ndarray, counts, region_counts, observed_in: float, observed_changed: float, *,
                 draws: int = DRAWS, rng=None) -> RatioNull:
    """Overlap |C & R| / |C| of the changed set C with a region R against the null (docs/science.md section 4).

    ``counts`` / ``region_counts``: magnitude histograms of all weights and of the region's weights; weights
    change independently with ``p`` of their pattern. Expected: sum_R p / sum p; draws: Binomial counts inside
    and outside R per cell."""
    rng = rng if rng is not None else np.random.default_rng()
    c = _counts("counts", counts)
    r = _counts("region_counts", region_counts)
    if np.any(r > c):
        raise ValueError("Argument `region_counts` exceeds `counts` for some magnitude; pass the histogram of a subset.")
    pc, nc, rc = _cells(np.asarray(p, np.float64), c, r)
    inside = _binomial_sum(rc, pc, draws, rng)
    outside = _binomial_sum(nc - rc, pc, draws, rng)
    return RatioNull(float(observed_in), float(observed_changed), float(np.dot(rc, pc)), float(np.dot(nc, pc)),
                     inside, inside + outside)


@dataclass(frozen=True)
class MagnitudeNull:
    """One tensor's changed mask against the magnitude-matched null: the fit, the changed share (equal to the
    observed by construction), one overlap per region, and the fp16 export the fitted drift predicts."""

    fit: DriftFit
    changed_share: RatioNull
    overlaps: dict[str, RatioNull] = field(default_factory=dict)
    fp16_share: RatioNull | None = None


def magnitude_null_from_counts(counts, changed_counts, regions: Mapping[str, tuple] | None = None, *,
                               fp16_changed: float | None = None, draws: int = DRAWS, rng=None) -> MagnitudeNull:
    """``magnitude_null`` from histograms: ``counts`` / ``changed_counts`` (``magnitude_counts`` of the base and of
    its changed entries), ``regions`` {name: (region histogram, observed |C & R|)}, ``fp16_changed`` the measured
    fp16-export changed count when known. Draws use ``rng`` in this order: changed share, regions in order, fp16."""
    rng = rng if rng is not None else np.random.default_rng()
    fit = fit_drift(counts, changed_counts)
    c = _counts("counts", counts)
    observed = float(_counts("changed_counts", changed_counts).sum())
    share = share_null(fit.p_bf16, c, observed, draws=draws, rng=rng)
    overlaps = {name: overlap_null(fit.p_bf16, c, rc, o, observed, draws=draws, rng=rng)
                for name, (rc, o) in (regions or {}).items()}
    fp16 = fp16_null(fit, c, float("nan") if fp16_changed is None else float(fp16_changed), draws=draws, rng=rng)
    return MagnitudeNull(fit, share, overlaps, fp16)


def fp16_null(fit: DriftFit, counts, observed: float, *, draws: int = DRAWS, rng=None) -> RatioNull:
    """Changed share of an fp16 export predicted by the pooled drift (module docstring): expectation at
    ``fit.pooled_sigma``; each draw takes log sigma from N(log sigma, ``pooled_log_sd``^2), then Binomial counts
    per group of equal fp16 rounding distances. ``observed``: the measured fp16 changed count (NaN if unknown)."""
    rng = rng if rng is not None else np.random.default_rng()
    c = _counts("counts", counts)
    size = float(c.sum())
    present = np.flatnonzero(c)
    keys = np.stack([_L16[present], _U16[present]], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    n_g = np.bincount(inv.ravel(), weights=c[present], minlength=len(uniq)).round().astype(np.int64)
    expected = float(np.dot(n_g, change_probability(uniq[:, 0], uniq[:, 1], fit.pooled_sigma)))
    if np.isfinite(fit.pooled_sigma) and fit.pooled_sigma > 0 and np.isfinite(fit.pooled_log_sd):
        sig = np.exp(np.log(fit.pooled_sigma) + fit.pooled_log_sd * rng.standard_normal(draws))
    else:
        sig = np.full(draws, fit.pooled_sigma)
    p = change_probability(uniq[None, :, 0], uniq[None, :, 1], sig[:, None])  # (draws, groups)
    drawn = rng.binomial(n_g[None, :], p).sum(axis=1).astype(np.float64)
    return RatioNull(float(observed), size, expected, size, drawn, np.full(draws, size))


def _bool(name: str, m, shape) -> np.ndarray:
    a = np.asarray(m)
    if a.dtype != np.bool_:
        raise ValueError(f"Argument `{name}` must be a boolean mask, got dtype {a.dtype}.")
    if a.shape != tuple(shape):
        raise ValueError(f"Argument `{name}` must have the shape {tuple(shape)} of `w0`, got {a.shape}.")
    return a


def _base(w0) -> np.ndarray:
    a = np.asarray(w0)
    if a.size == 0:
        raise ValueError("Argument `w0` is empty; it needs at least one element.")
    if not (np.issubdtype(a.dtype, np.floating) or a.dtype == P.BF16):
        raise ValueError(f"Argument `w0` must hold floating-point values, got dtype {a.dtype}.")
    if not np.all(np.isfinite(a.astype(np.float32))):
        raise ValueError("Argument `w0` holds NaN or infinite values.")
    return a


def magnitude_null(w0, changed, regions: Mapping[str, object] | None = None, *, changed_fp16=None,
                   draws: int = DRAWS, rng=None) -> MagnitudeNull:
    """A changed mask against the magnitude-matched null (module docstring): the per-stratum drift fit, the
    changed share, the overlap with each region {name: boolean mask} and the predicted fp16-export share
    (with the measured one when the fp16 ``changed_fp16`` mask is given). ``w0``: the base (rounded to bf16),
    ``changed``: its bf16 changed mask (same shape); ``rng``: a numpy Generator (``null_rng``)."""
    a = _base(w0)
    bits = magnitude_bits(a).ravel()
    ch = _bool("changed", changed, a.shape).ravel()
    hist = lambda m: np.bincount(bits[m], minlength=MAGNITUDES).astype(np.int64)  # noqa: E731
    counts, changed_counts = np.bincount(bits, minlength=MAGNITUDES).astype(np.int64), hist(ch)
    reg = {}
    for name, r in (regions or {}).items():
        rr = _bool(f"regions[{name!r}]", r, a.shape).ravel()
        reg[name] = (hist(rr), float(np.count_nonzero(ch & rr)))
    fp16 = None if changed_fp16 is None else float(np.count_nonzero(_bool("changed_fp16", changed_fp16, a.shape)))
    return magnitude_null_from_counts(counts, changed_counts, reg, fp16_changed=fp16, draws=draws, rng=rng)


def null_rng(name: str, seed: int = 0) -> np.random.Generator:
    """The generator of a tensor's null draws: seeded by (seed, CRC-32 of its name), so the analyzer and a
    direct call on the same tensor draw the same numbers."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode())])


# ----------------------------------------------------------------------------------------------
# several runs from one base: Jaccard (C3), row / column stripes (C3)


@dataclass(frozen=True)
class RunCells:
    """Cells of equal change probabilities across runs: ``p`` (G, R), weights per cell ``n`` (G,), and ``lut``
    (MAGNITUDES,): the cell of each magnitude pattern (-1 for patterns absent from the base)."""

    p: np.ndarray
    n: np.ndarray
    lut: np.ndarray


def run_cells(fits: Sequence[DriftFit], counts) -> RunCells:
    """Group the base's magnitude patterns by their change probabilities in every run (``DriftFit.p_bf16``)."""
    c = _counts("counts", counts)
    present = np.flatnonzero(c)
    rows = np.stack([f.p_bf16[present] for f in fits], axis=1)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    inv = inv.ravel()
    lut = np.full(MAGNITUDES, -1, np.int64)
    lut[present] = inv
    return RunCells(uniq, np.bincount(inv, weights=c[present], minlength=len(uniq)).round().astype(np.int64), lut)


def stripe_statistic(counts, line_size: int) -> np.ndarray:
    """Variance over lines of the consensus line ratio (docs/science.md section 4, row and column ratios):
    ``counts`` (..., runs, lines) changed weights per line of ``line_size`` weights; the consensus ratio of a
    line is the mean over runs of count / line_size. Large when the runs' changes share the same lines."""
    return (np.asarray(counts, np.float64) / line_size).mean(axis=-2).var(axis=-1)


def stripe_null(table, cells: RunCells, observed, line_size: int, *, draws: int = DRAWS, rng=None) -> ValueNull:
    """Stripe statistic of observed line counts (runs, lines) against the null: ``table`` (lines, G) holds the
    weights of each cell in each line. Under the null a line's count in run r is a sum of independent
    Bernoullis, mean mu = table p_r and variance table p_r (1 - p_r); the expectation of the statistic is exact,
    (1/L) sum (m_l - mean m)^2 + (1/L)(1 - 1/L) sum s_l with m_l, s_l the mean and variance of the line's
    consensus ratio; draws take each count from its normal approximation (lines hold many weights)."""
    rng = rng if rng is not None else np.random.default_rng()
    t = np.asarray(table, np.float64)
    obs = np.asarray(observed, np.float64)
    R, L = obs.shape
    mu = (t @ cells.p).T  # (R, L)
    var = (t @ (cells.p * (1 - cells.p))).T
    m = mu.mean(axis=0) / line_size
    s = var.sum(axis=0) / (R * line_size) ** 2
    expected = float(np.mean((m - m.mean()) ** 2) + (1 - 1 / L) * s.mean())
    drawn = mu[None] + np.sqrt(var)[None] * rng.standard_normal((draws, R, L))
    return ValueNull(float(stripe_statistic(obs, line_size)), expected, stripe_statistic(drawn, line_size))


@dataclass(frozen=True)
class RunsNull:
    """Changed masks of several runs from one base against the null: per-run fits, pairwise Jaccard (i, j) ->
    ``RatioNull``, their mean, and the row / column stripe statistics of the consensus (2-D tensors)."""

    fits: list[DriftFit]
    jaccard: dict[tuple[int, int], RatioNull]
    mean_jaccard: ValueNull
    stripes: dict[str, ValueNull] = field(default_factory=dict)


def _patterns(R: int) -> np.ndarray:
    return (np.arange(2**R)[:, None] >> np.arange(R)[None, :]) & 1  # (2^R, R): run r changed in pattern k


def runs_null_from_counts(cells: RunCells, pair_counts: Mapping[tuple[int, int], tuple[float, float]],
                          lines: Mapping[str, tuple] | None = None, *, draws: int = DRAWS, rng=None) -> RunsNull:
    """``runs_null`` from sufficient statistics: ``cells`` (``run_cells``), observed (|A & B|, |A | B|) per run pair
    (i, j), i < j, and ``lines`` {name: (table (lines, G), observed counts (runs, lines), line size)}. Per cell the
    2^R joint change patterns are one multinomial draw (runs independent given the cell); ``rng`` is used for
    the cells in order, then the lines in order."""
    rng = rng if rng is not None else np.random.default_rng()
    G, R = cells.p.shape
    if R > MAX_JOINT_RUNS:
        raise ValueError(f"Argument `cells` has {R} runs; the joint null draws at most {MAX_JOINT_RUNS}.")
    pat = _patterns(R)
    probs = np.prod(np.where(pat[None, :, :] == 1, cells.p[:, None, :], 1 - cells.p[:, None, :]), axis=2)  # (G, 2^R)
    probs = np.clip(probs, 0.0, 1.0)
    probs /= probs.sum(axis=1, keepdims=True)
    drawn = np.zeros((draws, 2**R))
    for g in range(G):
        drawn += rng.multinomial(int(cells.n[g]), probs[g], size=draws)
    jac = {}
    for (i, j), (inter, union) in pair_counts.items():
        both = (pat[:, i] & pat[:, j]).astype(bool)
        either = (pat[:, i] | pat[:, j]).astype(bool)
        pi, pj = cells.p[:, i], cells.p[:, j]
        jac[(i, j)] = RatioNull(float(inter), float(union), float(np.dot(cells.n, pi * pj)),
                                float(np.dot(cells.n, pi + pj - pi * pj)), drawn[:, both].sum(axis=1), drawn[:, either].sum(axis=1))
    mean = ValueNull.mean([r.value() for r in jac.values()])
    stripes = {name: stripe_null(t, cells, obs, size, draws=draws, rng=rng) for name, (t, obs, size) in (lines or {}).items()}
    return RunsNull([], jac, mean, stripes)


def runs_null(w0, changed_runs: Sequence, *, draws: int = DRAWS, rng=None) -> RunsNull:
    """Several runs' changed masks of one base against the magnitude-matched null (C3): each run's drift fitted
    as in ``fit_drift``, runs independent given the fits. Returns the pairwise Jaccard of the masks with its null
    (docs/science.md section 4; the null expectation sum n p_i p_j / sum n (p_i + p_j - p_i p_j) is the
    magnitude-matched level), their mean, and for 2-D ``w0`` the row and column stripe statistics."""
    a = _base(w0)
    masks = [_bool(f"changed_runs[{r}]", m, a.shape) for r, m in enumerate(changed_runs)]
    if len(masks) < 2:
        raise ValueError("Argument `changed_runs` needs at least two masks.")
    bits = magnitude_bits(a)
    counts = np.bincount(bits.ravel(), minlength=MAGNITUDES).astype(np.int64)
    fits = [fit_drift(counts, np.bincount(bits[m], minlength=MAGNITUDES).astype(np.int64)) for m in masks]
    cells = run_cells(fits, counts)
    pairs = {(i, j): (float(np.count_nonzero(masks[i] & masks[j])), float(np.count_nonzero(masks[i] | masks[j])))
             for i in range(len(masks)) for j in range(i + 1, len(masks))}
    lines = {}
    if a.ndim == 2:
        cell = cells.lut[bits]
        G = len(cells.n)
        for name, axis in (("rows", 1), ("cols", 0)):
            c = cell if axis == 1 else cell.T
            L = c.shape[0]
            table = np.bincount((np.arange(L)[:, None] * G + c).ravel(), minlength=L * G).reshape(L, G)
            obs = np.stack([m.sum(axis=axis) for m in masks])
            lines[name] = (table, obs, a.shape[axis])
    out = runs_null_from_counts(cells, pairs, lines, draws=draws, rng=rng)
    return RunsNull(fits, out.jaccard, out.mean_jaccard, out.stripes)
