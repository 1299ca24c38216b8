"""The regime ladder (issue 22): what a toy needs in order to gain the target accuracy with the drift of published
RLVR (median about 0.4 half-ULP, ||dW|| / ||W|| about 1e-3, 1 to 2 % of bf16 weights visible per step).

Bases along width, depth and headroom (``verify.knobs.LadderGrid``), each pretrained from >= 3 independent seeds;
one RL run per base at a published per-step ratio (the rlvr rule on that base's own median |w|) to the profile's
target gain. Units are bases: the drift each base's run needed is fitted against log2 parameters and the base's
pass@1, extrapolated to 1.5B and 8B parameters and set beside the published numbers.
"""

from __future__ import annotations

import math

import numpy as np

from verify.controls.ladder import permuted_sizes, planted_ladder
from verify.experiments.ladder import ladder
from verify.figures import ladder as fig
from verify.measures.ladder import PUBLISHED_SIZES, base_record, fit_ladder
from verify.registry import INCONCLUSIVE, Measurement, claim, negative, positive, report_section
from verify.rules import AtLeast, Interval, all_of

PUBLISHED_DRIFT = 0.4  # DeepScaleR-1.5B against its base (docs/science.md section 7)
THRESHOLD = 0.5  # the "drift <= 0.5 half-ULP"
SLOPE = AtLeast("slope of log2 drift ratio per doubling of parameters", -0.1,
                "a priori: the drift needed halves per 1,000x parameters", direction=-1)
REACH = AtLeast("fitted log2 drift ratio at 1.5B parameters (mean headroom)", math.log2(THRESHOLD),
                "paper: drift 0.4 half-ULP of DeepScaleR-1.5B; threshold 0.5", direction=-1)
REACH_8B = AtLeast("fitted log2 drift ratio at 8B parameters (mean headroom)", math.log2(THRESHOLD),
                   "paper: drift 0.4 half-ULP of DeepScaleR-1.5B; threshold 0.5", direction=-1)
RUNG = AtLeast("drift ratio of the rung's bases", THRESHOLD, "paper: drift 0.4; threshold 0.5", direction=-1)
COLUMNS = ("params", "pass1", "pass8", "lr", "step_ratio", "drift_ratio", "relative_update_norm", "visible_share",
           "sign_consistency", "steps", "gain", "sparsity", "drift_at_half_gain")


def decide_ladder(params, headroom, drift) -> tuple[str, dict]:
    """The rule on per-base numbers: the fit of log2 drift on log2 parameters and headroom; its slope per doubling
    wholly below -0.1 and its fitted drift at 1.5B wholly below 0.5 -> REPRODUCED (scaling the toy reaches the
    published regime); either wholly on the other side -> NOT REPRODUCED; else INCONCLUSIVE (also with too few
    bases to fit). Returns (status, {name: Outcome})."""
    f = fit_ladder(params, headroom, drift)
    if f is None:
        nan = Interval.of([])
        return INCONCLUSIVE, {"slope": SLOPE.decide(nan), "at 1.5B": REACH.decide(nan)}
    out = {"slope": SLOPE.decide(f.slope), "at 1.5B": REACH.decide(f.predict(PUBLISHED_SIZES["1.5B"]))}
    return all_of(*out.values()), out


def rung_table(rungs: dict) -> dict:
    """{rung: {column: Interval over its bases that reached the gain (params, pass@k and lr over all bases)}}."""
    table = {}
    for name, recs in rungs.items():
        done = [r for r in recs if r["reached"]]
        table[name] = {k: Interval.of([r[k] for r in (recs if k in ("params", "pass1", "pass8", "lr") else done)])
                       for k in COLUMNS} | {"bases": len(recs), "reached": len(done)}
    return table


def cheapest_reaching(table: dict) -> str | None:
    """The rung with the fewest parameters (then fewest steps) whose whole drift interval lies at or below 0.5 with
    every base at the gain; None when no rung does."""
    ok = [n for n, t in table.items() if t["reached"] == t["bases"] >= 2 and t["drift_ratio"].bounds()[1] <= THRESHOLD]
    return min(ok, key=lambda n: (table[n]["params"].mean, table[n]["steps"].mean)) if ok else None


def published_rung(table: dict) -> str | None:
    """The rung the ``published`` profile is built on (docs/science.md section 6): the cheapest rung at or below 0.5
    (``cheapest_reaching``); else the cheapest rung, every base at the gain, whose mean drift lies inside the 95 %
    interval of the lowest-drift rung's (the one that comes closest, ties within the spread of bases broken by
    cost); None when no rung has every base at the gain."""
    best = cheapest_reaching(table)
    full = [n for n, t in table.items() if t["reached"] == t["bases"] >= 2]
    if best is not None or not full:
        return best
    top = table[min(full, key=lambda n: table[n]["drift_ratio"].mean)]["drift_ratio"].bounds()[1]
    near = [n for n in full if table[n]["drift_ratio"].mean <= top]
    return min(near, key=lambda n: (table[n]["params"].mean, table[n]["steps"].mean))


@claim("regime.ladder", paper=("C1", "C6"),
       title="what the target gain costs in drift as the toy grows: the ladder toward the published regime",
       paper_number="published RLVR: drift about 0.4 half-ULP, ||dW|| / ||W|| about 1e-3, 1-2 % of bf16 weights "
                    "visible per step, sparsity 36-92 % (1.5B to 8B parameters)",
       rule=f"units: bases (>= 3 a rung, one RL run each at the rlvr rule's rate on its own median |w|, to the target "
            f"gain); OLS of log2 drift ratio on log2 parameters and the base's pass@1: {SLOPE.text}; and {REACH.text}",
       runs=ladder, sweep=True)
def ladder_claim(ctx, runs) -> Measurement:
    """regime.ladder: per base the cost of the target gain; the fit across bases, its extrapolation to 1.5B and 8B,
    the rungs that reach drift 0.5; planted size effect (positive) and permuted sizes (negative)."""
    rungs = {name: [base_record(ctx, r) for r in rs] for name, rs in runs.items()}
    done = [r for recs in rungs.values() for r in recs if r["reached"]]
    col = lambda k, rs=done: [r[k] for r in rs]  # noqa: E731
    status, outcomes = decide_ladder(col("params"), col("pass1"), col("drift_ratio"))
    every = [r for recs in rungs.values() for r in recs]
    pos = decide_ladder(col("params", every), col("pass1", every), planted_ladder(col("params", every)))[0]
    neg = decide_ladder(permuted_sizes(col("params")), col("pass1"), col("drift_ratio"))[0]
    fits = {"drift_ratio": fit_ladder(col("params"), col("pass1"), col("drift_ratio")),
            "relative_update_norm": fit_ladder(col("params"), col("pass1"), col("relative_update_norm")),
            "visible_share": fit_ladder(col("params"), col("pass1"), col("visible_share")),
            "sparsity": fit_ladder(col("params"), col("pass1"), [1.0 - s for s in col("sparsity")])}
    half = fit_ladder(col("params"), col("pass1"), col("drift_at_half_gain"))
    table = rung_table(rungs)
    numbers, extrapolated = {}, []
    for key, f in fits.items():
        if f is None:
            continue
        numbers[f"{key}_slope_per_doubling"] = f.slope.to_json()
        for label, n in PUBLISHED_SIZES.items():
            p = f.predict(n)
            lo, hi = p.bounds()
            tr = (lambda a: 1.0 - 2.0 ** a) if key == "sparsity" else (lambda a: 2.0 ** a)  # noqa: E731
            numbers[f"{key}@{label}"] = {"mean": tr(p.mean), "low": min(tr(lo), tr(hi)), "high": max(tr(lo), tr(hi))}
            extrapolated.append(f"{key} at {label}: {tr(p.mean):.3g} [{min(tr(lo), tr(hi)):.3g}, {max(tr(lo), tr(hi)):.3g}]")
    f = fits["drift_ratio"]
    reach_size = f.size_reaching(THRESHOLD) if f is not None else float("nan")
    numbers |= {"size_reaching_drift_0.5": reach_size, "cheapest_rung_reaching_0.5": cheapest_reaching(table) or "none",
                "bases_fitted": len(done), "bases": sum(len(v) for v in rungs.values()),
                "rungs": {n: {k: (v.to_json() if isinstance(v, Interval) else v) for k, v in t.items()} for n, t in table.items()}}
    if f is not None and f.headroom is not None:
        numbers["headroom_coefficient"] = f.headroom.to_json()
    if half is not None:
        numbers["half_gain_drift_slope_per_doubling"] = half.slope.to_json()
        numbers["half_gain_drift@1.5B"] = 2.0 ** half.predict(PUBLISHED_SIZES["1.5B"]).mean
    reached = [n for n in table if table[n]["reached"]]
    lowest = min(reached, key=lambda n: table[n]["drift_ratio"].mean) if reached else None
    numbers["lowest_drift_rung"] = lowest or "none"
    numbers["published_rung"] = published_rung(table) or "none"
    descriptive = {f"rung {n}": RUNG.decide(t["drift_ratio"]) for n, t in table.items()}
    if f is not None:
        descriptive["fitted drift at 8B"] = REACH_8B.decide(f.predict(PUBLISHED_SIZES["8B"]))
    sizes = col("params", every)
    figure = fig.ladder_plot(rungs, fits, (min(sizes), PUBLISHED_SIZES["8B"] * 1.5), PUBLISHED_SIZES["1.5B"], THRESHOLD)
    head = (f"drift slope per doubling of parameters {f.slope.text('+.3f')}; fitted drift at 1.5B "
            f"{2 ** f.predict(PUBLISHED_SIZES['1.5B']).mean:.3g}, reaching 0.5 at {reach_size:.3g} parameters"
            if f is not None else "too few bases reached the gain to fit")
    missed = [f"{n} {t['bases'] - t['reached']}" for n, t in table.items() if t["reached"] < t["bases"]]
    return Measurement(
        status, head + (f"; lowest drift {table[lowest]['drift_ratio'].text('.2f')} on rung {lowest}" if lowest else "")
        + f" (published 0.4); cheapest rung at or below 0.5: {numbers['cheapest_rung_reaching_0.5']}; the published "
        f"profile's rung by the rule: {numbers['published_rung']}",
        numbers=numbers,
        controls=[positive("planted bases whose drift falls 0.3 log2 per doubling to 0.2 at 1.5B", pos),
                  negative("the measured bases with their parameter counts permuted (no size effect)", neg)],
        outcomes={"slope per doubling of parameters": outcomes["slope"], "fitted drift at 1.5B": outcomes["at 1.5B"]},
        descriptive=descriptive, figures=[figure], runs=dict(runs),
        notes=[f"Fitted on {len(done)} of {numbers['bases']} bases (the others stopped at the step cap without the "
               f"gain: {', '.join(missed) or 'none'}); headroom = the base's pass@1 (mean over tasks, 16 samples per "
               "held-out problem); extrapolations at the ladder's mean headroom: " + "; ".join(extrapolated) + ".",
               "Rung names: w<d_model>-d<layers>-c<corpus correct rate in %>; each base's RL rate is the rlvr rule on "
               "its own median |w| (train.lr_rule=step_ratio).",
               "Drift needed for half the target gain (the same runs, first evaluation past it): slope per doubling "
               + (half.slope.text('+.3f') if half is not None else "-") + "."],
    )


def _cell(iv: dict, fmt: str) -> str:
    if iv["mean"] is None or not np.isfinite(iv["mean"]):
        return "-"
    if not np.isfinite(iv["low"]) or iv["low"] == iv["high"]:
        return format(iv["mean"], fmt)
    return f"{iv['mean']:{fmt}} [{iv['low']:{fmt}}, {iv['high']:{fmt}}]"


@report_section
def ladder_section(results) -> str:
    """report.md section 'The regime ladder': one row per rung, 95 % intervals across its bases."""
    v = {c.id: verdict for c, verdict in results}.get("regime.ladder")
    if v is None or "rungs" not in v.numbers:
        return ""
    cols = [("params", ".3g"), ("pass1", ".2f"), ("pass8", ".2f"), ("lr", ".2g"), ("step_ratio", ".3f"),
            ("drift_ratio", ".2f"), ("drift_at_half_gain", ".2f"), ("relative_update_norm", ".2g"),
            ("visible_share", ".3f"), ("sign_consistency", ".2f"), ("steps", ".0f"), ("gain", ".3f"), ("sparsity", ".3f")]
    lines = ["## The regime ladder", "", f"regime.ladder {v.cell}: {v.headline}.", "",
             "| rung | bases (at gain) | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for name, t in v.numbers["rungs"].items():
        lines.append(f"| {name} | {t['bases']} ({t['reached']}) | " + " | ".join(_cell(t[c], f) for c, f in cols) + " |")
    lines += ["", "Means with 95 % intervals across the rung's bases (costs over the bases that reached the gain); "
              "drift_at_half_gain: the drift at the first evaluation past half the target gain; visible_share: the "
              "median per-step share of weights whose bf16 value changed. Published RLVR: drift about 0.4 half-ULP, "
              "||dW|| / ||W|| about 1e-3, 1-2 % visible per step, sparsity 0.36-0.92."]
    return "\n".join(lines)
