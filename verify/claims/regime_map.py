"""The sweeps of the regime map (docs/science.md, 'Regime' and section 6): where, on dimensionless regime axes, the
precision and geometry claims hold for RL and for SFT, and whether RL differs from SFT at the same regime or only
because it usually runs with a smaller step.

- ``regime.phase``: RL and SFT over a learning-rate grid of >= 4 decades; each metric against the drift ratio;
  RL minus SFT within drift-ratio bins, pooled over the bins with random effects.
- ``regime.width``: RL at matched gain on bases of growing width; the slope of sparsity per doubling of d_model.
- ``regime.optimizer``: RL against SFT at matched gain under AdamW and under SGD (Adam with a large eps and
  on-policy SFT reported beside them).

The metrics of a run are ``verify.measures.regime_map.run_metrics``; the report's summary of the map is written
by ``verify.claims.regime``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from verify.controls.numbers import planted_differences, rising_sparsity, synthetic_phase
from verify.experiments.sweeps import OPT_SEEDS, SGD_SCALES, WIDTH_SEEDS, optimizers, phase_grid, sgd_lr, widths
from verify.figures import regime as fig
from verify.measures.regime_map import METRICS, run_metrics
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval, Outcome, Within
from verify.stats import binned_difference, slope_log2

PAPER_RL_BAND = (0.36, 0.92)  # bf16 sparsity of published RL checkpoints (C1)
PAPER_SFT_BAND = (0.006, 0.188)
BIN_DECADES = 0.5  # width of a drift-ratio bin (log10)
MAX_READ_WIDTH = 1e6  # a fitted crossing beyond this width is reported as "too flat", not as a number

# ------------------------------------------------------------------------------------------------
# regime.phase


@dataclass(frozen=True)
class PhaseRule:
    """One metric of regime.phase: ``presence`` (the pooled RL-minus-SFT statistic beyond its floor in the paper's
    direction), ``absence`` ('explained by regime': the same pooled interval inside +-floor, descriptive), and
    ``log2``: the per-bin statistic is log2(RL / SFT) (difference of the mean log2 values) instead of RL - SFT."""

    presence: AtLeast
    absence: Within
    log2: bool


def _difference_rule(label: str, floor: float, sign: int) -> PhaseRule:
    stat = f"RL - SFT {label} at matched drift ratio (random effects over drift bins)"
    return PhaseRule(AtLeast(stat, sign * floor, "a priori", sign), Within(stat, floor, "a priori"), False)


def _ratio_rule(label: str, sign: int) -> PhaseRule:
    stat = f"log2(RL / SFT) {label} at matched drift ratio (random effects over drift bins)"
    return PhaseRule(AtLeast(stat, sign * 1.0, "a priori: a factor 2", sign), Within(stat, 1.0, "a priori: a factor 2"), True)


PHASE_RULES = {  # metric of verify.measures.regime_map.METRICS -> its rule, in the paper's direction (METRICS' sign)
    "sparsity": _difference_rule("bf16 sparsity", 0.05, METRICS["sparsity"][1]),
    "principal_overlap": _difference_rule("principal overlap", 0.01, METRICS["principal_overlap"][1]),
    "lowmag_overlap": _difference_rule("low-magnitude overlap", 0.01, METRICS["lowmag_overlap"][1]),
    "energy_ratio": _ratio_rule("principal energy ratio", METRICS["energy_ratio"][1]),
    "nss": _ratio_rule("NSS", METRICS["nss"][1]),
    "angle": _ratio_rule("largest principal angle", METRICS["angle"][1]),
    "curvature": _ratio_rule("update curvature", METRICS["curvature"][1]),
}


def _log2(values) -> np.ndarray:
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log2(np.where(v > 0, v, 1.0)), np.nan)


def decide_phase_metric(x_rl, y_rl, x_sft, y_sft, rule: PhaseRule) -> tuple[Outcome, Outcome, list]:
    """RL against SFT at matched drift ratio for one metric: per bin of ``BIN_DECADES`` holding >= 2 runs of each
    method, RL - SFT (or log2 RL / SFT) with its Welch variance; pooled over the bins by random effects
    (``Interval.pooled``: units are bins, k - 1 degrees of freedom; a single bin: its Welch t interval with
    Welch-Satterthwaite df, since one bin gives no between-bin spread); (presence outcome, 'explained by regime'
    outcome, bins). No overlapping bin: both INCONCLUSIVE."""
    if rule.log2:
        y_rl, y_sft = _log2(y_rl), _log2(y_sft)
    bins = binned_difference(x_rl, y_rl, x_sft, y_sft, BIN_DECADES)
    if len(bins) == 1:  # no between-bin spread to estimate: the bin's own Welch t interval
        b = bins[0]
        pooled = Interval(b.diff, math.sqrt(b.variance), b.df, (b.diff,))
    else:
        pooled = Interval.pooled([b.diff for b in bins], [b.variance for b in bins])
    return rule.presence.decide(pooled), rule.absence.decide(pooled), bins


def _phase_rule_text() -> str:
    return ("RL and SFT over a learning-rate grid (>= 4 decades), fixed steps, 3 seeds; per metric, RL minus SFT within "
            f"drift-ratio bins of {BIN_DECADES} decades holding >= 2 runs of each (Welch variance per bin), pooled over "
            "the bins by random effects (Paule-Mandel, modified Knapp-Hartung t on bins - 1 df; a single bin: its Welch t "
            "interval). Status = sparsity's: "
            f"{PHASE_RULES['sparsity'].presence.text}. Other metrics by the same rule (descriptive): "
            + "; ".join(f"{n}: floor {r.presence.floor:+g}" + (" (log2 RL/SFT)" if r.log2 else "")
                        for n, r in PHASE_RULES.items() if n != "sparsity")
            + "; 'explained by regime' per metric: the same pooled 90 % interval inside +-|floor| (descriptive)")


@claim("regime.phase", paper=("C1", "C6", "C10", "C11"),
       title="RL against SFT at the same regime: sparsity and geometry over a learning-rate grid",
       paper_number="RL sparsity 36-92 %, SFT 0.6-18.8 % (at each method's usual step size)",
       rule=_phase_rule_text(), runs=phase_grid, sweep=True)
def phase(ctx, runs) -> Measurement:
    """regime.phase: every metric against the drift ratio for RL and SFT, pooled over drift bins by random effects."""
    p = ctx.profile
    vals = {m: [run_metrics(ctx, r) for r in rs] for m, rs in runs.items()}
    present, absent, numbers, figures, words = {}, {}, {}, [], []
    for name, (label, _) in METRICS.items():
        rule = PHASE_RULES[name]
        xr, yr = [v["drift_ratio"] for v in vals["rl"]], [v[name] for v in vals["rl"]]
        xs, ys = [v["drift_ratio"] for v in vals["sft"]], [v[name] for v in vals["sft"]]
        present[name], absent[name], bins = decide_phase_metric(xr, yr, xs, ys, rule)
        iv = present[name].interval
        numbers[f"{name}_{'log2_rl_over_sft' if rule.log2 else 'rl_minus_sft'}"] = iv.to_json()
        numbers[f"{name}_bins"] = [b._asdict() for b in bins]
        word = f"{present[name].cell} (presence); {absent[name].cell} (explained by regime)"
        numbers[f"{name}_decision"] = word  # read by verify.claims.regime's report section
        words.append(f"{name} {iv.text('+.3g')} over {len(bins)} bins: {present[name].status}, explained by regime "
                     f"{absent[name].status}")
        figures.append(fig.phase_plot(name, label, word, (xr, yr), (xs, ys), bins, BIN_DECADES, iv, rule.presence.floor,
                                      rule.absence.margin, ("log2(RL / SFT)" if rule.log2 else "RL - SFT") + f" {name}",
                                      (PAPER_RL_BAND, PAPER_SFT_BAND) if name == "sparsity" else None))
    sparsity_rule = PHASE_RULES["sparsity"]
    pos = decide_phase_metric(*synthetic_phase(0, 0.2), sparsity_rule)[0].status
    neg = decide_phase_metric(*synthetic_phase(1, 0.0), sparsity_rule)[0].status
    ph = p.phase_grid
    return Measurement(
        present["sparsity"].status, "; ".join(words), numbers=numbers,
        controls=[positive("synthetic sparsity curves with SFT 0.2 below RL at every drift", pos),
                  negative("synthetic RL and SFT on one curve (no method effect by construction)", neg)],
        outcomes={"sparsity: RL - SFT at matched drift ratio": present["sparsity"]},
        descriptive={**{f"{n}: RL vs SFT at matched drift ratio": o for n, o in present.items() if n != "sparsity"},
                     **{f"{n}: explained by regime": o for n, o in absent.items()}},
        figures=figures, runs={"sweep: rl over the lr grid": list(runs["rl"]), "sweep: sft over the lr grid": list(runs["sft"])},
        notes=[f"Grid: learning rates {list(ph.lrs)}, {ph.steps} steps per run (not matched), seeds "
               f"{list(p.seeds[: ph.seeds])}, fp32 master weights, grpo_kl and SFT on demonstrations. Paper's direction "
               "(RL vs SFT): " + ", ".join(f"{n} {'+' if s > 0 else '-'}" for n, (_, s) in METRICS.items()) + ".",
               "Drift ratio = median |w_T - w_0| / half-ULP(w_0) over parameters that received a gradient (the x axis); "
               "bins compare RL and SFT only where both have runs at the same drift. Units of every interval: drift "
               "bins (random effects: between-bin disagreement widens the interval; a single bin: its Welch t interval over runs)."],
    )


# ------------------------------------------------------------------------------------------------
# regime.width

WIDTH_RISES = AtLeast("OLS slope of RL bf16 sparsity per doubling of d_model (units: runs, n - 2 df)", 0.02, "a priori")


def decide_width(widths, sparsity) -> Outcome:
    """The slope of per-run sparsity against log2(d_model) (``verify.stats.slope_log2``) by ``WIDTH_RISES``: its 95 %
    interval wholly above +0.02 per doubling -> REPRODUCED (the toy moves toward the paper's band as it widens);
    wholly below -> NOT REPRODUCED; else (or fewer than 3 runs) INCONCLUSIVE."""
    return WIDTH_RISES.decide(slope_log2(widths, sparsity))


def band_width(widths, sparsity, level: float = PAPER_RL_BAND[0]) -> float:
    """Width at which the fitted sparsity trend (linear in log2 width) reaches ``level``; NaN if it never does."""
    lx, y = np.log2(np.asarray(widths, float)), np.asarray(sparsity, float)
    ok = np.isfinite(lx) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(lx[ok]) == 0:
        return float("nan")
    slope, icpt = np.polyfit(lx[ok], y[ok], 1)
    if slope <= 0:
        return float("nan")
    return float(2 ** ((level - icpt) / slope))


def _direction(iv: Interval) -> str:
    lo, hi = iv.bounds()
    return "rises" if lo > 0 else "falls" if hi < 0 else "shows no clear trend"


@claim("regime.width", paper=("C1", "C11"), title="as the model widens, does RL's bf16 sparsity move toward the paper's band?",
       paper_number="RL sparsity 36-92 % at d_model 1,536 to 4,096",
       rule=f"RL to the profile's target gain at each width (lr scaled by sqrt(32/width)), {WIDTH_SEEDS} seeds a width: "
            f"{WIDTH_RISES.text}; drift ratio, principal overlap, energy ratio and NSS slopes reported",
       runs=widths, sweep=True)
def width(ctx, runs) -> Measurement:
    """regime.width: regime and metrics of matched-gain RL against d_model."""
    ws = list(runs)
    xs = [w for w, rs in runs.items() for _ in rs]
    rows = [run_metrics(ctx, r) for rs in runs.values() for r in rs]
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    out = decide_width(xs, col("sparsity"))
    slopes = {k: slope_log2(xs, col(k)) for k in ("drift_ratio", "step_ratio", "principal_overlap", "energy_ratio", "nss")}
    reach = band_width(xs, col("sparsity"))
    pos = decide_width(*rising_sparsity(True)).status
    neg = decide_width(*rising_sparsity(False)).status
    figure = fig.against_width(xs, {"sparsity": ("bf16 sparsity (share unchanged)", col("sparsity")),
                                    "drift_ratio": ("drift ratio (half-ULPs)", col("drift_ratio")),
                                    "principal_overlap": ("principal share - alpha", col("principal_overlap"))},
                               PAPER_RL_BAND, WIDTH_RISES.floor)
    if reach <= MAX_READ_WIDTH:
        reach_text = f"fitted sparsity reaches {PAPER_RL_BAND[0]:.0%} at d_model {reach:.3g}"
    elif math.isfinite(reach):
        reach_text = f"the fitted sparsity trend is too flat to reach the paper's RL band below d_model {MAX_READ_WIDTH:.0e}"
    else:
        reach_text = "the fitted sparsity trend never reaches the paper's RL band"
    by_width = lambda key: {f"{key}@{w}": Interval.of([run_metrics(ctx, r)[key] for r in rs]).to_json()  # noqa: E731
                            for w, rs in runs.items()}
    return Measurement(
        out.status, f"sparsity slope per doubling of d_model {out.interval.text('+.3f')} ({out.interval.n} runs); drift "
                    f"ratio {slopes['drift_ratio'].text('+.2f')}; principal overlap {slopes['principal_overlap'].text('+.3f')}; "
                    f"{reach_text}",
        numbers={"sparsity_slope_per_doubling": out.interval.to_json(),
                 **{f"{k}_slope_per_doubling": v.to_json() for k, v in slopes.items()},
                 "width_reaching_band": reach, **by_width("sparsity"), **by_width("drift_ratio")},
        controls=[positive("planted sparsity rising 0.05 per doubling", pos),
                  negative("planted flat sparsity (no trend by construction)", neg)],
        outcomes={"sparsity slope per doubling of d_model": out},
        figures=[figure], runs={f"sweep: rl at d_model {w}": list(rs) for w, rs in runs.items()},
        notes=[f"As d_model grows from {ws[0]} to {ws[-1]}: sparsity {_direction(out.interval)}, the drift ratio at matched "
               f"gain {_direction(slopes['drift_ratio'])}, the principal overlap {_direction(slopes['principal_overlap'])}, "
               f"the energy ratio {_direction(slopes['energy_ratio'])}, NSS {_direction(slopes['nss'])}.",
               "Bases: d_ff = 2 d_model, heads of 16 dimensions (at least 2), same depth, corpus and pretraining steps "
               "as the profile's base, pretraining lr scaled by sqrt(32 / d_model).",
               "Units of the slope's interval: runs (OLS on every run, n - 2 degrees of freedom)."],
    )


# ------------------------------------------------------------------------------------------------
# regime.optimizer

def _opt_rule(what: str) -> AtLeast:
    return AtLeast(f"{what} bf16 sparsity at matched gain (per seed)", 0.05, "a priori")


OPT_RULES = {name: _opt_rule(f"RL - SFT under {name}") for name in ("adamw", "adam eps 1e-5", "sgd")}
OPT_NULL = {name: _opt_rule(f"null: RL - RL of the next seed under {name}") for name in ("adamw", "sgd")}
OPT_ABOVE = OPT_RULES["adamw"]  # the rule every arm shares (floor 0.05, a priori), for the text and the figure


def decide_optimizer(adamw: Outcome, sgd: Outcome) -> str:
    """The RL-minus-SFT sparsity difference (``OPT_RULES``: floor 0.05 under each optimizer) survives the change of
    optimizer: REPRODUCED under AdamW and under SGD -> REPRODUCED (not an Adam artifact); REPRODUCED under AdamW and NOT
    REPRODUCED under SGD -> NOT REPRODUCED (an Adam artifact); else INCONCLUSIVE."""
    if adamw.status == sgd.status == REPRODUCED:
        return REPRODUCED
    if adamw.status == REPRODUCED and sgd.status == NOT_REPRODUCED:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def sgd_choice(variants, method: str) -> str:
    """The smallest SGD scale whose ``method`` runs all reached the target gain (the largest if none did)."""
    for c in SGD_SCALES:
        if all(r.summary["reason"] == "target_gain" for r in variants[(method, f"sgd x{c:g}")]):
            return f"sgd x{c:g}"
    return f"sgd x{SGD_SCALES[-1]:g}"


def _differences(ctx, a_runs, b_runs, metric: str) -> Interval:
    """Per-seed ``metric`` of ``a_runs`` minus that of ``b_runs`` (paired by position), over seeds."""
    return Interval.of([run_metrics(ctx, a)[metric] - run_metrics(ctx, b)[metric] for a, b in zip(a_runs, b_runs)])


@claim("regime.optimizer", paper=("C1", "C11", "C7"), title="do the RL-SFT differences survive a change of optimizer?",
       paper_number="AdamW in every published run (no comparison in the paper)",
       rule=f"at matched gain, {OPT_SEEDS} seeds, under AdamW and under SGD (the smallest norm-matched SGD lr scale whose "
            f"runs all reach the gain): {OPT_RULES['adamw'].text}; {OPT_RULES['sgd'].text}. REPRODUCED under both -> "
            "REPRODUCED (not an Adam artifact); "
            "REPRODUCED under AdamW and NOT REPRODUCED under SGD -> NOT REPRODUCED (an Adam artifact); else "
            "INCONCLUSIVE. Adam eps 1e-5, Gate II metrics and on-policy SFT reported",
       runs=optimizers, sweep=True)
def optimizer(ctx, runs) -> Measurement:
    """regime.optimizer: RL against SFT under AdamW, Adam with eps 1e-5 and SGD; on-policy SFT beside them."""
    p = ctx.profile
    chosen = {"adamw": ("adamw", "adamw"), "adam eps 1e-5": ("adam eps 1e-5", "adam eps 1e-5"),
              "sgd": (sgd_choice(runs, "rl"), sgd_choice(runs, "sft"))}
    pick = {n: (list(runs[("rl", r)]), list(runs[("sft", s)])) for n, (r, s) in chosen.items()}
    metrics = ("sparsity", "principal_overlap", "energy_ratio", "nss")
    diffs = {(n, m): _differences(ctx, rl, sft, m) for n, (rl, sft) in pick.items() for m in metrics}
    arms = {n: OPT_RULES[n].decide(diffs[(n, "sparsity")]) for n in chosen}
    status = decide_optimizer(arms["adamw"], arms["sgd"])
    # the null: RL of the next seed in SFT's role (seeds 2..n+1 against 1..n; cyclic only when the profile has no more)
    nulls = {}
    for n, key in (("adamw", "adamw"), ("sgd", chosen["sgd"][0])):
        rl = pick[n][0]
        nulls[n] = OPT_NULL[n].decide(_differences(ctx, rl, rl[1:] + (list(runs[("rl_next_seed", key)]) or rl[:1]), "sparsity"))
    planted = OPT_ABOVE.decide(Interval.of(planted_differences(0.2)))
    pos = decide_optimizer(planted, OPT_RULES["sgd"].decide(Interval.of(planted_differences(0.15, seed=1))))
    onp = [run_metrics(ctx, r) for r in runs[("sft_onpolicy", "adamw")]]
    table = {n: {"rl": [run_metrics(ctx, r)["sparsity"] for r in rl], "sft": [run_metrics(ctx, r)["sparsity"] for r in sft]}
             for n, (rl, sft) in pick.items()}
    side = lambda iv: "RL above SFT" if iv.bounds()[0] > 0 else "RL below SFT" if iv.bounds()[1] < 0 else "no clear difference"  # noqa: E731
    changes = [f"{m}: " + ", ".join(f"{n} {side(diffs[(n, m)])} ({diffs[(n, m)].text('+.3g')})" for n in chosen)
               for m in metrics]
    return Measurement(
        status, "RL-SFT sparsity: " + ", ".join(f"{n} {diffs[(n, 'sparsity')].text('+.2f')} ({arms[n].status})" for n in chosen)
        + f"; on-policy SFT sparsity {Interval.of([v['sparsity'] for v in onp]).text('.2f')}",
        numbers={f"{n}_{m}_rl_minus_sft": e.to_json() for (n, m), e in diffs.items()}
        | {f"null_{n}_rl_minus_next_seed_rl": o.interval.to_json() for n, o in nulls.items()}
        | {"onpolicy_sft_sparsity": Interval.of([v["sparsity"] for v in onp]).to_json(),
           "onpolicy_sft_principal_overlap": Interval.of([v["principal_overlap"] for v in onp]).to_json(),
           "sgd_rl_lr": sgd_lr(p, "rl", float(chosen["sgd"][0].split("x")[1])),
           "sgd_sft_lr": sgd_lr(p, "sft", float(chosen["sgd"][1].split("x")[1]))},
        controls=[positive("planted differences +0.2 (AdamW) and +0.15 (SGD), 3 seeds, SD 0.01", pos),
                  negative("null under SGD: RL of the next seed in SFT's role, AdamW arm planted at +0.2",
                           decide_optimizer(planted, nulls["sgd"])),
                  negative("null under AdamW: RL of the next seed in SFT's role, SGD arm planted at +0.2",
                           decide_optimizer(nulls["adamw"], planted))],
        outcomes={"AdamW: RL - SFT sparsity": arms["adamw"], "SGD: RL - SFT sparsity": arms["sgd"]},
        descriptive={"Adam eps 1e-5: RL - SFT sparsity": arms["adam eps 1e-5"],
                     **{f"null under {n}: RL - RL of the next seed": o for n, o in nulls.items()}},
        figures=[fig.sparsity_by_optimizer(table, [v["sparsity"] for v in onp],
                                           {n: diffs[(n, "sparsity")] for n in chosen}, OPT_ABOVE.floor)],
        runs={f"sweep: {m} {k}": list(v) for (m, k), v in runs.items()},
        notes=["RL minus SFT per optimizer (95 % interval over seeds; the paper expects RL above SFT in sparsity and "
               "below it in principal overlap, energy ratio and NSS): " + "; ".join(changes) + ".",
               f"SGD lr chosen: RL {chosen['sgd'][0]}, SFT {chosen['sgd'][1]} (norm-matched rule of regime.sgd_lr).",
               "Negative controls: under each optimizer the RL runs of the next seeds play SFT's role (the same method, "
               "so no RL-SFT difference by construction), through the same rule with the other arm planted as reproduced; "
               "they must not read REPRODUCED.",
               "On-policy SFT = cross-entropy on the model's own verified samples (rejection sampling) at the SFT lr: "
               "on-policy data with the SFT objective."],
    )
