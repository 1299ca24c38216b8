"""What one rung of the regime ladder cost (regime.ladder): per base (its RL run), the parameters and headroom of
the base, the rate the trainer derived from it, and the regime numbers at the matched stop; the fit of log2 drift
ratio on log2 parameters and headroom across bases; its extrapolation to published sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm

from verify.rules import Interval

PUBLISHED_SIZES = {"1.5B": 1.5e9, "8B": 8e9}  # DeepScaleR-1.5B, the paper's Qwen3-8B DAPO run


def first_crossing(records: list[dict], gain: float) -> float:
    """The drift ratio logged at the first evaluation whose held-out gain reached ``gain`` (NaN if none did)."""
    for m in records:
        if m.get("heldout/gain", -1.0) >= gain and m.get("regime/drift_ratio") is not None:
            return float(m["regime/drift_ratio"])
    return float("nan")


def base_record(ctx, run) -> dict:
    """One base of the ladder and its RL run: parameters, pass@1 and pass@8 of the base (mean over tasks), the run's
    lr, step ratio, drift ratio, ||dW|| / ||W||, median per-step bf16-visible share, sign consistency, steps, gain,
    bf16 sparsity, whether it reached the target gain, and the drift at which it first gained half of it (memoised)."""

    def compute():
        base = ctx.base(run.spec.base)
        r, s = run.regime, run.summary
        metrics = run.metrics()
        visible = [m["precision/bf16_visible_share"] for m in metrics if "precision/bf16_visible_share" in m]
        target = run.spec.train.target_gain
        return {"params": float(sum(v.size for v in base.flat().values())), "pass1": base.mean_pass_at(1),
                "pass8": base.mean_pass_at(8), "lr": r["lr"], "step_ratio": r["step_ratio"], "drift_ratio": r["drift_ratio"],
                "relative_update_norm": r["relative_update_norm"], "visible_share": float(np.median(visible)),
                "sign_consistency": r["sign_consistency"], "steps": float(s["stopped_at"]), "gain": s["gain"],
                "sparsity": r["sparsity_bf16_all"], "reached": s["reason"] == "target_gain",
                "drift_at_half_gain": first_crossing(metrics, target / 2) if target else float("nan")}

    return ctx.memo(("ladder_base", run.directory.name), compute)


@dataclass(frozen=True)
class LadderFit:
    """OLS of log2 y = a + b log2(parameters) [+ c headroom] over bases: coefficient intervals (t on the residual
    degrees of freedom, units: bases) and the fitted model, for predictions."""

    slope: Interval  # b, per doubling of parameters
    headroom: Interval | None  # c, per unit of pass@1 (None when the bases share one headroom)
    intercept: float
    mean_headroom: float
    result: object  # statsmodels RegressionResults
    n: int

    def predict(self, params: float, headroom: float | None = None) -> Interval:
        """The fitted mean of log2 y at ``params`` (and ``headroom``, default the bases' mean) with its t interval."""
        h = self.mean_headroom if headroom is None else headroom
        x = [1.0, math.log2(params)] + ([h] if self.headroom is not None else [])
        pred = self.result.get_prediction(np.asarray([x]))
        return Interval(float(pred.predicted_mean[0]), float(pred.se_mean[0]), float(self.result.df_resid),
                        tuple(float(v) for v in self.result.model.endog))

    def size_reaching(self, level: float, headroom: float | None = None) -> float:
        """Parameters at which the fitted log2 y equals log2 ``level`` (inf when the slope is not negative)."""
        h = self.mean_headroom if headroom is None else headroom
        b = self.slope.mean
        if not b < 0:
            return float("inf")
        c = self.headroom.mean * h if self.headroom is not None else 0.0
        return float(2.0 ** ((math.log2(level) - self.intercept - c) / b))


def fit_ladder(params, headroom, values) -> LadderFit | None:
    """The fit of log2 ``values`` on log2 ``params`` and ``headroom`` over bases (non-finite or non-positive values
    dropped); the headroom term is left out when it does not vary. None with fewer than one residual degree of
    freedom (too few bases to put an interval on the slope)."""
    p, h, v = (np.asarray(a, np.float64) for a in (params, headroom, values))
    ok = np.isfinite(p) & np.isfinite(h) & np.isfinite(v) & (v > 0) & (p > 0)
    p, h, v = p[ok], h[ok], v[ok]
    use_h = h.size > 0 and float(np.ptp(h)) > 0
    cols = [np.ones_like(p), np.log2(p)] + ([h] if use_h else [])
    if p.size < len(cols) + 1 or np.ptp(np.log2(p)) == 0:
        return None
    res = sm.OLS(np.log2(v), np.column_stack(cols)).fit()
    values_ = tuple(float(x) for x in np.log2(v))
    coef = lambda i: Interval(float(res.params[i]), float(res.bse[i]), float(res.df_resid), values_)  # noqa: E731
    return LadderFit(coef(1), coef(2) if use_h else None, float(res.params[0]), float(h.mean()), res, int(p.size))
