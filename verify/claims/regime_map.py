"""The sweeps of the regime map (docs/science.md, 'Regime'): where, on dimensionless regime axes, the precision
and geometry claims hold for RL and for SFT, and whether RL differs from SFT at the same regime or only because it
usually runs with a smaller step.

- ``regime.phase``: RL and SFT over a learning-rate grid of >= 4 decades; each metric against the drift ratio;
  RL against SFT in overlapping drift-ratio bins.
- ``regime.width``: RL at matched gain on bases of growing width; trends of the regime and metrics.
- ``regime.optimizer``: AdamW against SGD and Adam with a large eps, RL against SFT at matched gain; and
  on-policy SFT between RL and SFT on demonstrations.

The metrics of a run are ``verify.measures.regime_map.run_metrics``; the report's summary of the map is written
by ``verify.claims.regime``.
"""

from __future__ import annotations

import math

import numpy as np

from verify.controls.numbers import planted_estimate, rising_sparsity, synthetic_phase
from verify.experiments.sweeps import SGD_SCALES, OPT_SEEDS, optimizers, phase_grid, sgd_lr, widths
from verify.figures import regime as fig
from verify.measures.regime_map import METRICS, run_metrics
from verify.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Estimate,
    Measurement,
    claim,
    decide_positive,
    negative,
    positive,
)
from verify.stats import binned_difference, over_seeds, slope_log2

PAPER_RL_BAND = (0.36, 0.92)  # bf16 sparsity of published RL checkpoints (C1)
PAPER_SFT_BAND = (0.006, 0.188)
BIN_DECADES = 0.5  # width of a drift-ratio bin (log10)
COLLAPSE_SHARE = 0.25  # "one curve": |pooled difference| CI inside +- this share of the metric's range
MAX_READ_WIDTH = 1e6  # a fitted crossing beyond this width is reported as "too flat", not as a number

# ------------------------------------------------------------------------------------------------
# regime.phase


def decide_phase_metric(x_rl, y_rl, x_sft, y_sft, sign: int) -> tuple[str, str, dict]:
    """RL against SFT at matched regime for one metric (rule written before the runs):
    no bin with >= 2 runs of each method -> INCONCLUSIVE ('no overlap');
    CI of sign * (RL - SFT) > 0 -> REPRODUCED ('method effect at matched regime', the paper's direction);
    CI < 0 -> NOT REPRODUCED ('opposite method effect');
    CI inside +- COLLAPSE_SHARE x the metric's range over all runs -> NOT REPRODUCED ('explained by regime':
    both methods on one curve); else INCONCLUSIVE."""
    b = binned_difference(x_rl, y_rl, x_sft, y_sft, BIN_DECADES)
    if not b["bins"]:
        return INCONCLUSIVE, "no overlap", b
    lo, hi = sorted((sign * b["low"], sign * b["high"]))
    if lo > 0:
        return REPRODUCED, "method effect at matched regime", b
    if hi < 0:
        return NOT_REPRODUCED, "opposite method effect", b
    ys = np.asarray([*y_rl, *y_sft], float)
    spread = float(np.nanmax(ys) - np.nanmin(ys)) if np.isfinite(ys).any() else 0.0
    if spread > 0 and max(abs(b["low"]), abs(b["high"])) <= COLLAPSE_SHARE * spread:
        return NOT_REPRODUCED, "explained by regime", b
    return INCONCLUSIVE, "undecided", b


@claim("regime.phase", paper=("C1", "C6", "C10", "C11"),
       title="RL against SFT at the same regime: sparsity and geometry over a learning-rate grid",
       paper_number="RL sparsity 36-92 %, SFT 0.6-18.8 % (at each method's usual step size)",
       rule=f"RL and SFT over a learning-rate grid (>= 4 decades), fixed steps, >= 3 seeds; per metric, RL minus SFT "
            f"pooled over drift-ratio bins of {BIN_DECADES} decades holding >= 2 runs of each: CI beyond 0 in the "
            f"paper's direction -> method effect (REPRODUCED); opposite -> NOT REPRODUCED; CI within +-{COLLAPSE_SHARE} "
            "of the metric's range -> explained by regime (NOT REPRODUCED); else INCONCLUSIVE. The row's status is "
            "the sparsity metric's (C1); every metric's decision is in the numbers",
       runs=phase_grid, sweep=True)
def phase(ctx, runs) -> Measurement:
    """regime.phase: every metric against the drift ratio for RL and SFT, decided in overlapping bins."""
    p = ctx.profile
    vals = {m: [run_metrics(ctx, r) for r in rs] for m, rs in runs.items()}
    decisions, numbers, figures = {}, {}, []
    for name, (label, sign) in METRICS.items():
        xr, yr = [v["drift_ratio"] for v in vals["rl"]], [v[name] for v in vals["rl"]]
        xs, ys = [v["drift_ratio"] for v in vals["sft"]], [v[name] for v in vals["sft"]]
        status, word, b = decide_phase_metric(xr, yr, xs, ys, sign)
        decisions[name] = (status, word)
        numbers[f"{name}_rl_minus_sft"] = Estimate(b["diff"], b["low"], b["high"], [d for *_, d in b["bins"]])
        numbers[f"{name}_decision"] = word
        numbers[f"{name}_overlapping_bins"] = float(len(b["bins"]))
        figures.append(fig.phase_plot(name, label, word, (xr, yr), (xs, ys), [lo for lo, *_ in b["bins"]], BIN_DECADES,
                                      (PAPER_RL_BAND, PAPER_SFT_BAND) if name == "sparsity" else None))
    pos = decide_phase_metric(*synthetic_phase(0, 0.2), +1)[0]
    neg = decide_phase_metric(*synthetic_phase(1, 0.0), +1)[0]
    ph = p.phase_grid
    return Measurement(
        decisions["sparsity"][0], "; ".join(f"{n}: {w}" for n, (_, w) in decisions.items())
        + f" (sparsity RL-SFT {numbers['sparsity_rl_minus_sft'].text('+.3f')})",
        numbers=numbers, controls=[positive("synthetic curves with a planted method offset", pos),
                                   negative("synthetic RL and SFT on one curve", neg)],
        figures=figures, runs=list(runs["rl"]) + list(runs["sft"]),
        notes=[f"Grid: learning rates {list(ph.lrs)}, {ph.steps} steps per run (not matched), seeds "
               f"{list(p.seeds[: ph.seeds])}, fp32 master weights, grpo_kl and SFT on demonstrations. Metric directions "
               "of the paper (RL minus SFT): " + ", ".join(f"{n} {'+' if s > 0 else '-'}" for n, (_, s) in METRICS.items()) + ".",
               "Drift ratio = median |w_T - w_0| / half-ULP(w_0) over parameters that received a gradient (the x axis); "
               "bins compare RL and SFT only where both have runs at the same drift."],
    )


# ------------------------------------------------------------------------------------------------
# regime.width


def decide_width(widths, sparsity) -> tuple[str, Estimate]:
    """Sparsity rises with width (slope per doubling, CI > 0) -> REPRODUCED (the toy moves toward the paper's
    band as it widens); CI < 0 -> NOT REPRODUCED; else INCONCLUSIVE."""
    est = slope_log2(widths, sparsity)
    if not est.per_seed:
        return INCONCLUSIVE, est
    return decide_positive(est), est


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


@claim("regime.width", paper=("C1", "C11"), title="as the model widens, does RL's bf16 sparsity move toward the paper's band?",
       paper_number="RL sparsity 36-92 % at d_model 1,536 to 4,096",
       rule="RL to the profile's target gain at each width (lr scaled by sqrt(32/width)), >= 2 seeds: OLS slope of "
            "bf16 sparsity per doubling of d_model with a 95 % CI: > 0 -> REPRODUCED; < 0 -> NOT REPRODUCED; else "
            "INCONCLUSIVE; drift ratio, principal overlap, energy ratio and NSS slopes reported",
       runs=widths, sweep=True)
def width(ctx, runs) -> Measurement:
    """regime.width: regime and metrics of matched-gain RL against d_model."""
    ws = list(runs)
    xs = [w for w, rs in runs.items() for _ in rs]
    rows = [run_metrics(ctx, r) for rs in runs.values() for r in rs]
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    status, est = decide_width(xs, col("sparsity"))
    slopes = {k: slope_log2(xs, col(k)) for k in ("drift_ratio", "step_ratio", "principal_overlap", "energy_ratio", "nss")}
    reach = band_width(xs, col("sparsity"))
    pos = decide_width(*rising_sparsity(True))[0]
    neg = decide_width(*rising_sparsity(False))[0]
    figure = fig.against_width(xs, {"sparsity": ("bf16 sparsity (share unchanged)", col("sparsity")),
                                    "drift_ratio": ("drift ratio (half-ULPs)", col("drift_ratio")),
                                    "principal_overlap": ("principal share - alpha", col("principal_overlap"))}, PAPER_RL_BAND)
    direction = lambda e: "rises" if e.low > 0 else "falls" if e.high < 0 else "shows no clear trend"  # noqa: E731
    if reach <= MAX_READ_WIDTH:
        reach_text = f"fitted sparsity reaches {PAPER_RL_BAND[0]:.0%} at d_model {reach:.3g}"
    elif math.isfinite(reach):
        reach_text = f"the fitted sparsity trend is too flat to reach the paper's RL band below d_model {MAX_READ_WIDTH:.0e}"
    else:
        reach_text = "the fitted sparsity trend never reaches the paper's RL band"
    return Measurement(
        status, f"sparsity slope per doubling of d_model {est.text('+.3f')}; drift ratio {slopes['drift_ratio'].text('+.2f')}; "
                f"principal overlap {slopes['principal_overlap'].text('+.3f')}; {reach_text}",
        numbers={"sparsity_slope_per_doubling": est, **{f"{k}_slope_per_doubling": v for k, v in slopes.items()},
                 "width_reaching_band": reach,
                 **{f"sparsity@{w}": over_seeds([run_metrics(ctx, r)["sparsity"] for r in rs]) for w, rs in runs.items()},
                 **{f"drift_ratio@{w}": over_seeds([run_metrics(ctx, r)["drift_ratio"] for r in rs]) for w, rs in runs.items()}},
        controls=[positive("planted rising sparsity", pos), negative("planted falling sparsity", neg)],
        figures=[figure], runs=[r for rs in runs.values() for r in rs],
        notes=[f"As d_model grows from {ws[0]} to {ws[-1]}: sparsity {direction(est)}, the drift ratio at matched "
               f"gain {direction(slopes['drift_ratio'])}, the principal overlap {direction(slopes['principal_overlap'])}, "
               f"the energy ratio {direction(slopes['energy_ratio'])}, NSS {direction(slopes['nss'])}.",
               "Bases: d_ff = 2 d_model, heads of 16 dimensions (at least 2), same depth, corpus and pretraining steps "
               "as the profile's base, pretraining lr scaled by sqrt(32 / d_model)."],
    )


# ------------------------------------------------------------------------------------------------
# regime.optimizer


def decide_optimizer(adam_diff: Estimate, sgd_diff: Estimate) -> str:
    """The RL-minus-SFT sparsity difference survives the change of optimizer: CI > 0 under AdamW and under SGD
    -> REPRODUCED (not an Adam artifact); CI > 0 under AdamW but not under SGD -> NOT REPRODUCED (the
    difference needs Adam's per-coordinate normalisation); else INCONCLUSIVE."""
    a, s = decide_positive(adam_diff), decide_positive(sgd_diff)
    if a == s == REPRODUCED:
        return REPRODUCED
    if a == REPRODUCED:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def sgd_choice(variants, method: str) -> str:
    """The smallest SGD scale whose ``method`` runs all reached the target gain (the largest if none did)."""
    for c in SGD_SCALES:
        if all(r.summary["reason"] == "target_gain" for r in variants[(method, f"sgd x{c:g}")]):
            return f"sgd x{c:g}"
    return f"sgd x{SGD_SCALES[-1]:g}"


@claim("regime.optimizer", paper=("C1", "C11", "C7"), title="do the RL-SFT differences survive a change of optimizer?",
       paper_number="AdamW in every published run (no comparison in the paper)",
       rule=f"at matched gain, {OPT_SEEDS} seeds: per-seed RL-SFT bf16 sparsity difference, CI > 0 under AdamW and under "
            "SGD (the smallest norm-matched SGD lr scale whose runs all reach the gain) -> REPRODUCED; under AdamW "
            "only -> NOT REPRODUCED (an Adam artifact); else INCONCLUSIVE; Gate II metrics and on-policy SFT reported",
       runs=optimizers, sweep=True)
def optimizer(ctx, runs) -> Measurement:
    """regime.optimizer: RL against SFT under AdamW, Adam with eps 1e-5 and SGD; on-policy SFT beside them."""
    p = ctx.profile
    chosen = {"adamw": ("adamw", "adamw"), "adam eps 1e-5": ("adam eps 1e-5", "adam eps 1e-5"),
              "sgd": (sgd_choice(runs, "rl"), sgd_choice(runs, "sft"))}
    table, diffs = {}, {}
    for name, (rl_key, sft_key) in chosen.items():
        rl = [run_metrics(ctx, r) for r in runs[("rl", rl_key)]]
        sft = [run_metrics(ctx, r) for r in runs[("sft", sft_key)]]
        for metric in ("sparsity", "principal_overlap", "energy_ratio", "nss"):
            diffs[(name, metric)] = over_seeds(np.asarray([a[metric] for a in rl]) - np.asarray([b[metric] for b in sft]))
        table[name] = {"rl": [v["sparsity"] for v in rl], "sft": [v["sparsity"] for v in sft]}
    onp = [run_metrics(ctx, r) for r in runs[("sft_onpolicy", "adamw")]]
    status = decide_optimizer(diffs[("adamw", "sparsity")], diffs[("sgd", "sparsity")])
    pos = decide_optimizer(planted_estimate(0.2), planted_estimate(0.15))
    neg = decide_optimizer(planted_estimate(0.2), planted_estimate(0.0))
    names = list(chosen)
    side = lambda e: "RL above SFT" if e.low > 0 else "RL below SFT" if e.high < 0 else "no clear difference"  # noqa: E731
    changes = [f"{metric}: " + ", ".join(f"{n} {side(diffs[(n, metric)])} ({diffs[(n, metric)].text('+.3g')})"
                                         for n in names)
               for metric in ("sparsity", "principal_overlap", "energy_ratio", "nss")]
    return Measurement(
        status, "RL-SFT sparsity: " + ", ".join(f"{n} {diffs[(n, 'sparsity')].text('+.2f')}" for n in names)
        + f"; on-policy SFT sparsity {over_seeds([v['sparsity'] for v in onp]).text('.2f')}",
        numbers={f"{n}_{m}_rl_minus_sft": e for (n, m), e in diffs.items()}
        | {"onpolicy_sft_sparsity": over_seeds([v["sparsity"] for v in onp]),
           "onpolicy_sft_principal_overlap": over_seeds([v["principal_overlap"] for v in onp]),
           "sgd_rl_lr": sgd_lr(p, "rl", float(chosen["sgd"][0].split("x")[1])),
           "sgd_sft_lr": sgd_lr(p, "sft", float(chosen["sgd"][1].split("x")[1]))},
        controls=[positive("planted difference under both optimizers", pos),
                  negative("planted difference under AdamW only", neg)],
        figures=[fig.sparsity_by_optimizer(table, [v["sparsity"] for v in onp])], runs=[r for v in runs.values() for r in v],
        notes=["RL minus SFT per optimizer (95 % interval over seeds; the paper expects RL above SFT in sparsity and "
               "below it in principal overlap, energy ratio and NSS): " + "; ".join(changes) + ".",
               f"SGD lr chosen: RL {chosen['sgd'][0]}, SFT {chosen['sgd'][1]} (norm-matched rule of regime.sgd_lr).",
               "On-policy SFT = cross-entropy on the model's own verified samples (rejection sampling) at the SFT lr: "
               "on-policy data with the SFT objective."],
    )
