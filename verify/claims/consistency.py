"""Case studies of consistency (docs/science.md claims C3 and C4): do RL runs from one base change the
same bf16 weights, more than chance allows, in row and column stripes, and is that pattern there early?

- ``consistency.jaccard`` (C3): pairwise Jaccard of the bf16 changed masks of >= 5 RL runs from one base
  that differ in seed, task mix, data order and algorithm, against two baselines: the independent-Bernoulli
  level pq / (p + q - pq) of the paper, and a magnitude-matched level (``verify.measures.jaccard``). The same
  for SFT runs and for RL from the random initialisation of the base.
- ``consistency.stripes`` (C3): consensus maps of those runs; do the changes concentrate in rows of
  Q, K, V and columns of O beyond independence and beyond magnitude (permutation tests)?
- ``consistency.temporal`` (C4): snapshots of fixed-length RL and SFT runs; is the row/column profile of
  the changed mask at a quarter of training already that of the final mask?

Views and frames: changed masks compare the released bf16 base with the bf16 export of a snapshot; matrices
are in the paper's (out, in) layout, so "row" means output unit; only transformer-block matrices (attention
q/k/v/o, fc_in, fc_out) are used. Runs: ``verify.experiments.cases`` (``consistency``, ``temporal``).
"""

from __future__ import annotations

import numpy as np

from theory import spectral as S
from verify.controls.masks import planted_masks, planted_rows, planted_stripes, shuffled_lines
from verify.experiments.cases import case_seeds, consistency, temporal as temporal_runs
from verify.figures import cases as fig
from verify.measures.jaccard import MIN_EXCESS, excess_by_matrix, excess_by_pair, jaccard_triplet, pairwise_jaccard
from verify.measures.masks import MIN_STRATUM, changed, strata
from verify.measures.stripes import N_PERMUTATIONS, STRIPE_AXES, consensus, stripe_test
from verify.measures.temporal import corr, min_corr_from, profile_vector, temporal_series
from verify.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Measurement,
    claim,
    decide_positive,
    negative,
    positive,
    report_section,
)
from verify.report import est_text, figure_lines
from verify.stats import over_seeds

STRIPE_P = 0.05
STABLE_CORR = 0.7  # the row/column profile at t correlates with the final one at least this much
QUARTERS = (0.25, 0.5, 0.75)


def decide_jaccard(bernoulli_excess, magnitude_excess) -> tuple[str, object, object]:
    """C3 rule on per-matrix excess Jaccard values: REPRODUCED iff the 95 % CIs of J - Bernoulli level and of
    J - magnitude-matched level both lie above 0 and both means reach MIN_EXCESS (overlap beyond chance and
    beyond what ULP size alone gives); NOT REPRODUCED iff the CI of J - magnitude level lies below MIN_EXCESS
    (no overlap beyond magnitude, even where it beats the Bernoulli level); else INCONCLUSIVE."""
    b, m = over_seeds(bernoulli_excess), over_seeds(magnitude_excess)
    if b.low > 0 and m.low > 0 and b.mean >= MIN_EXCESS and m.mean >= MIN_EXCESS:
        return REPRODUCED, b, m
    if m.high < MIN_EXCESS:
        return NOT_REPRODUCED, b, m
    return INCONCLUSIVE, b, m


def _set_excess(ctx, runs):
    """(pairwise Jaccard table, excess over the Bernoulli level, over the magnitude level) of a set of runs, each
    run with its own strata."""
    t = pairwise_jaccard([changed(ctx, r) for r in runs], [strata(ctx, r) for r in runs])
    b, m = excess_by_matrix(t)
    return t, over_seeds(b), over_seeds(m)


@claim("consistency.jaccard", paper=("C3",), title="RL runs from one base change overlapping weights, beyond chance",
       paper_number="block 13 of a 1.5B model: mean pairwise Jaccard 0.55-0.60 vs 0.37-0.47 for independent "
                    "Bernoulli masks of the same densities",
       rule=f">= 5 RL runs (seeds, data order, task mixes, dapo_clip) from one base, each to the profile's target gain; "
            f"per block matrix "
            f"the pair-mean of J - pq/(p+q-pq) and of J - magnitude-matched level (ULP strata of >= {MIN_STRATUM} "
            f"weights); 95 % t-CI over block matrices: both CIs > 0 and both means >= {MIN_EXCESS} -> REPRODUCED; "
            f"magnitude CI entirely below {MIN_EXCESS} -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=consistency)
def jaccard(ctx, runs) -> Measurement:
    """consistency.jaccard (C3): pairwise Jaccard of RL changed masks against Bernoulli and magnitude levels."""
    p = ctx.profile
    labels, rl_runs, sft, rnd = list(runs["rl"]), list(runs["rl"].values()), list(runs["sft"]), list(runs["random_init"])
    st = strata(ctx, rl_runs[0])
    masks = [changed(ctx, r) for r in rl_runs]
    table = pairwise_jaccard(masks, st)
    bern, mag = excess_by_matrix(table)
    status, b_est, m_est = decide_jaccard(bern, mag)
    pair_b, pair_m = excess_by_pair(table)
    sft_t, sft_b, sft_m = _set_excess(ctx, sft)
    rnd_t, rnd_b, rnd_m = _set_excess(ctx, rnd)
    # what each factor changes: the first seed's run against the run that differs from it in one factor
    first = masks[0]
    factor = {}
    for label, m in zip(labels[1:], masks[1:]):
        tr = [jaccard_triplet(first[n], m[n], st[n], st[n]) for n in first]
        factor[label] = (float(np.mean([t[0] - t[1] for t in tr])), float(np.mean([t[0] - t[2] for t in tr])))
    shapes = {n: m.shape for n, m in first.items()}
    pos, _, _ = decide_jaccard(*excess_by_matrix(pairwise_jaccard(planted_masks(st, shapes, len(masks), seed=11, shared=0.8), st)))
    neg_b, neg_m = excess_by_matrix(pairwise_jaccard(planted_masks(st, shapes, len(masks), seed=12, shared=0.0), st))
    neg, _, _ = decide_jaccard(neg_b, neg_m)
    names = list(table)
    mean = lambda t, c: [float(np.nanmean(t[n][:, c])) for n in names]  # noqa: E731
    figure = fig.jaccard_bars(names, mean(table, 0), mean(table, 2), mean(table, 1), mean(sft_t, 0), mean(rnd_t, 0),
                              len(rl_runs))
    density = over_seeds([float(np.mean(np.concatenate([m[n].ravel() for n in names]))) for m in masks])
    return Measurement(
        status,
        f"RL mean J {np.nanmean(mean(table, 0)):.3f} vs Bernoulli {np.nanmean(mean(table, 1)):.3f} and magnitude "
        f"level {np.nanmean(mean(table, 2)):.3f}: excess {b_est.text('+.3f')} / {m_est.text('+.3f')} (CI over "
        f"{len(names)} matrices); SFT {sft_b.text('+.3f')} / {sft_m.text('+.3f')}; random-init RL "
        f"{rnd_b.text('+.3f')} / {rnd_m.text('+.3f')}",
        numbers={"rl_jaccard": float(np.nanmean(mean(table, 0))), "rl_bernoulli_level": float(np.nanmean(mean(table, 1))),
                 "rl_magnitude_level": float(np.nanmean(mean(table, 2))),
                 "rl_excess_bernoulli": b_est, "rl_excess_magnitude": m_est,
                 "rl_excess_bernoulli_over_pairs": over_seeds(pair_b), "rl_excess_magnitude_over_pairs": over_seeds(pair_m),
                 "rl_changed_density": density,
                 "sft_jaccard": float(np.nanmean([np.nanmean(t[:, 0]) for t in sft_t.values()])),
                 "sft_excess_bernoulli": sft_b, "sft_excess_magnitude": sft_m,
                 "random_init_jaccard": float(np.nanmean([np.nanmean(t[:, 0]) for t in rnd_t.values()])),
                 "random_init_excess_bernoulli": rnd_b, "random_init_excess_magnitude": rnd_m,
                 "per_matrix": {n: {"jaccard": a, "bernoulli": b, "magnitude": c} for n, a, b, c in
                                zip(names, mean(table, 0), mean(table, 1), mean(table, 2))},
                 "factor_excess_vs_first_seed": {k: {"bernoulli": v[0], "magnitude": v[1]} for k, v in factor.items()},
                 "planted_magnitude_only_excess_bernoulli": over_seeds(neg_b)},
        controls=[positive("planted masks: magnitude-driven rates plus a shared preferred 30 % of weights", pos),
                  negative("planted masks: magnitude-driven rates only (beats the Bernoulli level, not the "
                           "magnitude-matched one)", neg)],
        figures=[figure], runs=rl_runs + sft + rnd,
        notes=[f"RL runs compared: {', '.join(labels)}; each stopped at +{p.target_gain:g} held-out accuracy or "
               f"{p.max_steps} steps (stops: {', '.join(str(r.summary.get('stopped_at', '?')) for r in rl_runs)}), "
               "fp32 master, bf16 export. "
               f"CI over block matrices (each value a mean over {len(table[names[0]])} run pairs); the CI over pairs "
               "(each a mean over matrices) is reported beside it, but pairs share runs, so it is too narrow.",
               "Excess of the first seed's run against the run differing in one factor (Bernoulli / magnitude): "
               + "; ".join(f"{k} {v[0]:+.3f} / {v[1]:+.3f}" for k, v in factor.items()) + ".",
               "The magnitude-matched level treats each run's changes as a random subset within ULP strata of each "
               "matrix; overlap above it is not explained by the size of the weights (Gate III readout).",
               f"SFT: the {len(sft)} matched SFT runs of the profile; random init: the {len(rnd)} RL runs from the "
               "un-pretrained base (the verifier never fires there, so only the KL term moves the weights; see "
               "control.random_base)."],
    )


def decide_stripes(p_independence: float, p_magnitude: float, alpha: float = STRIPE_P) -> str:
    """C3 stripes rule: REPRODUCED iff the changes concentrate in rows of Q/K/V and columns of O beyond both
    nulls (p_independence < alpha and p_magnitude < alpha); NOT REPRODUCED iff not beyond the magnitude null
    (p_magnitude >= alpha: whatever concentration there is, the ULP sizes of the weights alone give it, as
    for the Jaccard rule); else INCONCLUSIVE (beyond magnitude but not beyond independence: the nulls disagree)."""
    if p_independence < alpha and p_magnitude < alpha:
        return REPRODUCED
    if p_magnitude >= alpha:
        return NOT_REPRODUCED
    return INCONCLUSIVE


@claim("consistency.stripes", paper=("C3",), title="consensus maps: row stripes in Q, K, V and column stripes in O",
       paper_number="figure only: row stripes in Q/K/V, column stripes in O (block 13 of a 1.5B model)",
       rule=f"consensus of the C3 RL runs; statistic = variance of the consensus row ratios (Q, K, V) or column "
            f"ratios (O), standardised and summed over those matrices; {N_PERMUTATIONS} permutations of each run's "
            f"mask, uniform (independence) and within ULP strata (magnitude): both p < {STRIPE_P} -> REPRODUCED; "
            f"p_magnitude >= {STRIPE_P} (no stripes beyond what weight magnitude gives) -> NOT REPRODUCED; else "
            "INCONCLUSIVE",
       runs=lambda p: {k: v for k, v in consistency(p).items() if k != "random_init"})
def stripes(ctx, runs) -> Measurement:
    """consistency.stripes (C3): consensus maps and a permutation test of row/column concentration."""
    rl_runs, sft = list(runs["rl"].values()), list(runs["sft"])
    st = strata(ctx, rl_runs[0])
    masks = [changed(ctx, r) for r in rl_runs]
    test = stripe_test(masks, st)
    status = decide_stripes(test["p_independence"], test["p_magnitude"])
    sft_test = stripe_test([changed(ctx, r) for r in sft], st, seed=1)
    shapes = {n: m.shape for n, m in masks[0].items()}
    pos_t = stripe_test(planted_stripes(st, shapes, len(masks), 21, True), st, seed=2)
    neg_t = stripe_test(planted_stripes(st, shapes, len(masks), 22, False), st, seed=3)
    pos = decide_stripes(pos_t["p_independence"], pos_t["p_magnitude"])
    neg = decide_stripes(neg_t["p_independence"], neg_t["p_magnitude"])
    cons = consensus(masks)
    block = sorted({n.split("/")[0] for n in cons})[0]
    lines = {}
    for n in [m for m in cons if m.startswith(block + "/") and m.split("/", 1)[-1] in STRIPE_AXES]:
        axis = STRIPE_AXES[n.split("/", 1)[-1]]
        lines[f"{n} ({'rows' if axis == 1 else 'columns'})"] = np.sort(cons[n].mean(axis=axis))[::-1]
    per = {n: {k: float(v) for k, v in d.items()} for n, d in test["per_matrix"].items()}
    return Measurement(
        status,
        f"rows of Q/K/V, columns of O: p = {test['p_independence']:.3f} against independence, "
        f"{test['p_magnitude']:.3f} against magnitude (z {test['z_independence']:.1f} / {test['z_magnitude']:.1f}); "
        f"SFT p = {sft_test['p_independence']:.3f} / {sft_test['p_magnitude']:.3f}",
        numbers={"p_independence": test["p_independence"], "p_magnitude": test["p_magnitude"],
                 "z_independence": test["z_independence"], "z_magnitude": test["z_magnitude"],
                 "sft_p_independence": sft_test["p_independence"], "sft_p_magnitude": sft_test["p_magnitude"],
                 "sft_z_magnitude": sft_test["z_magnitude"], "per_matrix": per,
                 "planted_p_magnitude": pos_t["p_magnitude"], "wrong_axis_p_independence": neg_t["p_independence"]},
        controls=[positive("planted row stripes in Q/K/V and column stripes in O", pos),
                  negative("planted stripes on the other axis (columns of Q/K/V, rows of O)", neg)],
        figures=[fig.consensus_maps(cons, block, len(masks), test["p_independence"], test["p_magnitude"]),
                 fig.line_profiles(lines)], runs=rl_runs + sft,
        notes=[f"{len(masks)} RL runs (those of consistency.jaccard); statistic per matrix = variance over rows of the "
               "consensus row ratio (Q, K, V; rows = output units in the (out, in) layout) or over columns of the "
               "column ratio (O); each standardised by its null mean and SD and summed over the matrices; p-values "
               f"from {N_PERMUTATIONS} draws in which every run's mask is permuted independently.",
               "The magnitude null permutes within ULP strata, so row structure that comes from rows of large weights "
               "(large ULPs) survives it: only stripes beyond weight magnitude give a small p there.",
               "Per-matrix p-values are in the numbers (per_matrix)."],
    )


def decide_temporal(min_corrs) -> tuple[str, object]:
    """C4 rule on per-seed minimum (over snapshots from a quarter of training on) correlations of the row/column
    profile with the final one: CI above STABLE_CORR -> REPRODUCED; CI below it -> NOT REPRODUCED; else
    INCONCLUSIVE."""
    est = over_seeds(min_corrs)
    return decide_positive(over_seeds(np.asarray(min_corrs, float) - STABLE_CORR)), est


def _at_quarters(rows_list, total, key) -> dict:
    """{'25%': Estimate over seeds of ``key`` at the first snapshot at or after each quarter of ``total`` steps}."""
    return {f"{int(100 * q)}%": over_seeds([next(r[key] for r in rows if r["step"] >= q * total) for rows in rows_list])
            for q in QUARTERS}


@claim("consistency.temporal", paper=("C4",), title="the update pattern appears early and keeps its shape",
       paper_number="figure only: the same row and column peaks at different steps",
       rule=f">= 6 snapshots of fixed-length RL runs: per seed the smallest Pearson correlation, over snapshots from "
            f"25 % of training on, between the row/column update-ratio profile at t and the final one; CI over seeds "
            f"above {STABLE_CORR} -> REPRODUCED; below -> NOT REPRODUCED; else INCONCLUSIVE (SFT reported beside)",
       runs=temporal_runs)
def temporal(ctx, runs) -> Measurement:
    """consistency.temporal (C4): row/column profiles, Jaccard and share of the final set over training."""
    k = ctx.profile.cases
    rl_runs, sft = list(runs["rl"]), list(runs["sft"])
    st = strata(ctx, rl_runs[0])
    series = {}
    for method, rs, total, every in (("RL", rl_runs, k.rl_steps, k.rl_snapshot_every),
                                     ("SFT", sft, k.sft_steps, k.sft_snapshot_every)):
        steps = list(range(every, total + 1, every))
        series[method] = (steps, [temporal_series(ctx, r, steps, st)["rows"] for r in rs], total)
    rl_steps, rl_rows, T = series["RL"]
    _, sft_rows, T_sft = series["SFT"]
    status, est = decide_temporal([min_corr_from(rows, T / 4) for rows in rl_rows])
    sft_mins = [min_corr_from(rows, T_sft / 4) for rows in sft_rows]
    res_mins = [min_corr_from(rows, T / 4, "residual_corr") for rows in rl_rows]
    sft_res = [min_corr_from(rows, T_sft / 4, "residual_corr") for rows in sft_rows]
    # controls: planted nested (stable) profiles; real step-t profiles against shuffled final profiles
    shapes = {n: m.shape for n, m in changed(ctx, rl_runs[0]).items()}
    pos, _ = decide_temporal([min_corr_from(planted_rows(shapes, rl_steps, 30 + i, True), T / 4) for i in range(3)])
    shuffled_final = [profile_vector(shuffled_lines(changed(ctx, r, rl_steps[-1]), 40 + i)) for i, r in enumerate(rl_runs)]
    shuffled = [min(corr(profile_vector(changed(ctx, r, t)), pf) for t in rl_steps if t >= T / 4)
                for r, pf in zip(rl_runs, shuffled_final)]
    neg, _ = decide_temporal(shuffled)
    name = next(n for n in shapes if n.endswith("attn/q"))
    panels = [(method, rs[0].spec.train.seed, series[method][0],
               np.stack([np.asarray(S.row_ratios(changed(ctx, rs[0], t)[name])) for t in series[method][0]], axis=1))
              for method, rs in (("RL", rl_runs), ("SFT", sft))]
    rl_at = _at_quarters(rl_rows, T, "share_of_final")
    return Measurement(
        status,
        f"RL: smallest r(profile_t, final) from 25 % on {est.text('.2f')} (threshold {STABLE_CORR}); share of the final "
        f"changed set present at 25/50/75 %: " + ", ".join(v.text('.2f') for v in rl_at.values())
        + f"; SFT r {over_seeds(sft_mins).text('.2f')}; beyond magnitude (residual r) RL {over_seeds(res_mins).text('.2f')}, "
        f"SFT {over_seeds(sft_res).text('.2f')}",
        numbers={"rl_min_corr_from_quarter": est, "sft_min_corr_from_quarter": over_seeds(sft_mins),
                 "rl_min_residual_corr_from_quarter": over_seeds(res_mins),
                 "sft_min_residual_corr_from_quarter": over_seeds(sft_res),
                 "rl_share_of_final": rl_at, "sft_share_of_final": _at_quarters(sft_rows, T_sft, "share_of_final"),
                 "rl_jaccard_with_final": _at_quarters(rl_rows, T, "jaccard"),
                 "sft_jaccard_with_final": _at_quarters(sft_rows, T_sft, "jaccard"),
                 "rl_corr_with_final": _at_quarters(rl_rows, T, "corr"), "sft_corr_with_final": _at_quarters(sft_rows, T_sft, "corr"),
                 "rl_density_at": _at_quarters(rl_rows, T, "density"), "shuffled_final_min_corr": over_seeds(shuffled)},
        controls=[positive("planted nested masks with fixed row/column drift rates", pos),
                  negative("real step-t profiles against row- and column-shuffled final masks", neg)],
        figures=[fig.over_training(series, STABLE_CORR), fig.row_ratios_over_time(panels, name)], runs=rl_runs + sft,
        notes=[f"RL: {T} steps, snapshots every {k.rl_snapshot_every}; SFT: {T_sft} steps, snapshots every "
               f"{k.sft_snapshot_every}; fp32 master, changed masks on the bf16 export; seeds {list(case_seeds(ctx.profile))}.",
               "Profile = row ratios and column ratios of every block matrix, concatenated; 'residual' subtracts the "
               "profile expected if each weight changed at its ULP stratum's rate (what magnitude alone predicts).",
               "The share of the final set already present is |M_t & M_T| / |M_T|; with fp32 master weights a weight "
               "that crossed half a ULP by t mostly stays changed, so these shares rise with t by construction; the "
               "decisive number is the profile correlation."],
    )


@report_section
def consistency_section(results) -> str:
    """report.md section 'Case studies C3 and C4': our overlap, stripes and stability numbers beside the paper's."""
    v = {c.id: verdict for c, verdict in results}
    if not any(k in v for k in ("consistency.jaccard", "consistency.stripes", "consistency.temporal")):
        return ""
    lines = ["## Case studies C3 and C4: consistency across runs and over time", ""]
    if "consistency.jaccard" in v:
        n = v["consistency.jaccard"].numbers
        lines += [f"- **C3, overlap** ({v['consistency.jaccard'].status}). Paper: mean pairwise Jaccard 0.55-0.60 against "
                  "0.37-0.47 for independent Bernoulli masks (block 13 of a 1.5B model). Ours: "
                  f"{est_text(n.get('rl_jaccard'), '.3f')} against {est_text(n.get('rl_bernoulli_level'), '.3f')} "
                  f"(Bernoulli) and {est_text(n.get('rl_magnitude_level'), '.3f')} (magnitude-matched); excess "
                  f"{est_text(n.get('rl_excess_bernoulli'))} / {est_text(n.get('rl_excess_magnitude'))}; SFT "
                  f"{est_text(n.get('sft_excess_bernoulli'))} / {est_text(n.get('sft_excess_magnitude'))}; RL from random "
                  f"init {est_text(n.get('random_init_excess_bernoulli'))} / {est_text(n.get('random_init_excess_magnitude'))}."]
        lines += figure_lines(v["consistency.jaccard"])
    if "consistency.stripes" in v:
        n = v["consistency.stripes"].numbers
        lines += ["", f"- **C3, stripes** ({v['consistency.stripes'].status}). Paper: row stripes in Q, K, V and column "
                  "stripes in O (consensus maps, no test). Ours: permutation p = "
                  f"{est_text(n.get('p_independence'), '.3f')} against independence and "
                  f"{est_text(n.get('p_magnitude'), '.3f')} against magnitude; SFT "
                  f"{est_text(n.get('sft_p_independence'), '.3f')} / {est_text(n.get('sft_p_magnitude'), '.3f')}."]
        lines += figure_lines(v["consistency.stripes"])
    if "consistency.temporal" in v:
        n = v["consistency.temporal"].numbers
        share = n.get("rl_share_of_final") or {}
        lines += ["", f"- **C4, stability** ({v['consistency.temporal'].status}). Paper: the same row and column peaks "
                  "at different steps (figure only). Ours: smallest correlation of the row/column profile with the final "
                  f"one from 25 % of training on, RL {est_text(n.get('rl_min_corr_from_quarter'), '.2f')} (threshold "
                  f"{STABLE_CORR}), SFT {est_text(n.get('sft_min_corr_from_quarter'), '.2f')}; beyond magnitude RL "
                  f"{est_text(n.get('rl_min_residual_corr_from_quarter'), '.2f')}; share of the final RL changed set "
                  "present at " + ", ".join(f"{q} {est_text(e, '.2f')}" for q, e in share.items()) + "."]
        lines += figure_lines(v["consistency.temporal"])
    return "\n".join(lines)
