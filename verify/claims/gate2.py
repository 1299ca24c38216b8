"""Gate II claims: the perturbation bounds on real updates (C8), spectrum preservation (C10), the
off-principal bias of the changed mask (C11) and of the continuous update (C11, energy), and a direct
measurement of the curvature of the update directions (beyond the paper).

Views: continuous quantities (dW, spectra, angles, energies, curvature) use the fp32 master weights of
the fp32_master runs; changed masks use the released bf16 export. The base W0 is the released bf16 base
(every run starts from it; its master and export coincide). Matrices are in (out, in) layout
(``toy_models.transformer.weight_matrices``); masks and overlaps use the transformer-block matrices
(attention q/k/v/o, fc_in, fc_out). Every claim reads the matched RL and SFT runs.
"""

from __future__ import annotations

import numpy as np

from verify.controls.masks import avoiding_principal, permuted
from verify.controls.updates import (
    PLANT_GAP_SHARE,
    PLANTED_SEEDS,
    planted_energy_ratios,
    planted_spectrum,
    top_pair_planted,
)
from verify.experiments.matched import Matched, matched
from verify.figures import gates as fig
from verify.measures.curvature import LANCZOS_ITERS, FisherCurvature
from verify.measures.masks import ALPHA, base_masks, changed, in_mask_share
from verify.measures.spectra import BOUNDS, K, bound_values, drift, energy_ratio
from verify.measures.weights import block_pairs, pairs
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Measurement, claim, decide_both, decide_positive, negative, positive
from verify.stats import over_seeds

ALPHA_CURVE = (0.1, 0.3, 0.5, 0.7, 0.9)  # figure only
TOL_REL, TOL_ABS = 1e-9, 1e-12  # a bound is violated iff lhs > rhs (1 + TOL_REL) + TOL_ABS (fp64 arithmetic)
NEG_RHS_SCALE = 0.1  # negative control of the bounds: rhs evaluated on 0.1 dW
HARD_BOUNDS = ("weyl", "mirsky", "ky_fan", "wedin_safe")  # theorems: must never fail


# ----------------------------------------------------------------------------------------------
# 1. gate2.bounds (C8)


def decide_bounds(records: list[dict]) -> tuple[str, dict]:
    """Zero violations of Weyl, Mirsky, Ky Fan and Wedin-safe (only where it applies, i.e. finite rhs,
    |dW|_2 < gamma_k) -> REPRODUCED; any violation -> NOT REPRODUCED. Paper-form Wedin is counted, not decisive."""
    counts = {}
    for name in BOUNDS:
        lhs = np.array([r[name][0] for r in records])
        rhs = np.array([r[name][1] for r in records])
        ok = np.isfinite(rhs)
        counts[name] = {"violations": int(np.sum(ok & (lhs > rhs * (1 + TOL_REL) + TOL_ABS))), "applicable": int(ok.sum())}
    status = REPRODUCED if sum(counts[n]["violations"] for n in HARD_BOUNDS) == 0 else NOT_REPRODUCED
    return status, counts


@claim("gate2.bounds", paper=("C8",), title="Weyl, Mirsky, Ky Fan and Wedin bounds hold on real updates",
       paper_number="theorems (paper Gate II); Wedin paper form uses the unperturbed gap",
       rule=f"0 violations of Weyl, Mirsky, Ky Fan (k={K}) and Wedin-safe (where |dW|_2 < gamma_k) over every real "
               "(W0, W1) pair of RL and SFT, all seeds -> REPRODUCED; any -> NOT REPRODUCED; paper-form Wedin "
               "violations reported as a count",
       runs=matched)
def bounds(ctx, runs: Matched) -> Measurement:
    """gate2.bounds (C8): Weyl, Mirsky, Ky Fan, both Wedin forms on every real (W0, W1) pair."""
    records, neg_records = [], []
    for r in (*runs.rl, *runs.sft):
        for master in (True, False):
            for W0, W1 in pairs(ctx, r, master=master).values():
                dW = W1 - W0
                records.append(bound_values(W0, dW))
                if master:
                    neg_records.append(bound_values(W0, dW, dW_rhs=NEG_RHS_SCALE * dW))
    status, counts = decide_bounds(records)
    neg, neg_counts = decide_bounds(neg_records)
    base_matrices = [W0 for W0, _ in pairs(ctx, runs.rl[0], master=True).values()]
    pos, pos_counts = decide_bounds([bound_values(W0, top_pair_planted(W0)) for W0 in base_matrices])

    tight = {name: np.array([r[name][0] / r[name][1] for r in records if np.isfinite(r[name][1]) and r[name][1] > 0])
             for name in BOUNDS}
    numbers: dict = {}
    for name in BOUNDS:
        t = tight[name]
        numbers[f"{name}_violations"] = float(counts[name]["violations"])
        numbers[f"{name}_applicable_pairs"] = float(counts[name]["applicable"])
        numbers[f"{name}_tightness_median"] = float(np.median(t)) if t.size else float("nan")
        numbers[f"{name}_tightness_worst"] = float(np.max(t)) if t.size else float("nan")
    numbers["pairs"] = float(len(records))
    numbers["negative_control_violations"] = float(sum(neg_counts[n]["violations"] for n in HARD_BOUNDS))
    wp = counts["wedin_paper"]
    headline = (f"{sum(counts[n]['violations'] for n in HARD_BOUNDS)} violations of Weyl/Mirsky/KyFan/Wedin-safe on "
                f"{len(records)} pairs (Wedin-safe applicable on {counts['wedin_safe']['applicable']}); median tightness "
                + ", ".join(f"{n} {numbers[n + '_tightness_median']:.2g}" for n in HARD_BOUNDS)
                + f"; paper-form Wedin violations {wp['violations']}/{wp['applicable']}")
    return Measurement(
        status, headline, numbers=numbers,
        controls=[negative(f"lhs of the real pair, rhs of {NEG_RHS_SCALE} dW (mismatched)", neg),
                  positive("planted dW = 0.1 sigma_1 u_1 v_1^T on base matrices (equality case)", pos)],
        figures=[fig.bound_tightness(tight, ["Weyl", "Mirsky", f"Ky Fan (k={K})", "Wedin safe", "Wedin paper"], len(records))],
        runs=list(runs.rl) + list(runs.sft),
        notes=[f"Every weight matrix (blocks, embeddings, unembedding) of RL and SFT runs of seeds {list(runs.seeds)}, final "
               f"snapshot, both the fp32 master and the bf16 export; k = min({K}, m, n); fp64 arithmetic; a violation is "
               f"lhs > rhs (1 + {TOL_REL:g}) + {TOL_ABS:g}.",
               f"Wedin safe form only where |dW|_2 < gamma_k ({counts['wedin_safe']['applicable']} of {len(records)} pairs).",
               f"Negative control violations per bound: { {n: neg_counts[n]['violations'] for n in BOUNDS} }; "
               f"positive control violations: { {n: pos_counts[n]['violations'] for n in BOUNDS} }."],
    )


# ----------------------------------------------------------------------------------------------
# 2. gate2.spectrum (C10)


def decide_spectrum(rl_nss, sft_nss, rl_ang, sft_ang) -> tuple[str, object, object]:
    """Per-seed (SFT - RL) NSS difference CI > 0 and (SFT - RL) angle difference CI > 0 -> REPRODUCED;
    both CIs < 0 -> NOT REPRODUCED; else INCONCLUSIVE."""
    d_nss = over_seeds(np.asarray(sft_nss) - np.asarray(rl_nss))
    d_ang = over_seeds(np.asarray(sft_ang) - np.asarray(rl_ang))
    return decide_both(d_nss, d_ang), d_nss, d_ang


@claim("gate2.spectrum", paper=("C10",), title="RL keeps the spectrum and top subspaces; SFT moves them more",
       paper_number="numbers only in figures",
       rule=f"per-seed (SFT - RL) normalised spectral shift CI > 0 and (SFT - RL) largest top-{K} principal angle "
               "CI > 0 (block-matrix means) -> REPRODUCED; both < 0 -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=matched)
def spectrum(ctx, runs: Matched) -> Measurement:
    """gate2.spectrum (C10): normalised spectral shift and top-k principal angles, RL against SFT."""
    rl, sft = [drift(ctx, r) for r in runs.rl], [drift(ctx, r) for r in runs.sft]
    rl_nss, rl_ang = [a for a, _ in rl], [b for _, b in rl]
    sft_nss, sft_ang = [a for a, _ in sft], [b for _, b in sft]
    status, d_nss, d_ang = decide_spectrum(rl_nss, sft_nss, rl_ang, sft_ang)
    # negative control: RL of seed s against RL of seed s+1 (cyclic) playing SFT
    shift = lambda v: list(v[1:]) + list(v[:1])  # noqa: E731
    neg, _, _ = decide_spectrum(rl_nss, shift(rl_nss), rl_ang, shift(rl_ang))
    pl = planted_spectrum(block_pairs(ctx, runs.rl[0], master=True))
    pos, p_nss, p_ang = decide_spectrum(pl["off"][0], pl["rot"][0], pl["off"][1], pl["rot"][1])
    figure = fig.paired_panels(runs.seeds, ((rl_nss, sft_nss, "normalised spectral shift (dimensionless)"),
                                            (rl_ang, sft_ang, f"largest top-{K} principal angle (degrees)")),
                               "C10: spectrum drift of block matrices, RL vs SFT at matched gain (fp32 master)")
    return Measurement(
        status,
        f"NSS RL {over_seeds(rl_nss).text('.3g')} vs SFT {over_seeds(sft_nss).text('.3g')} (SFT-RL {d_nss.text('.3g')}); "
        f"angle RL {over_seeds(rl_ang).text('.3g')} deg vs SFT {over_seeds(sft_ang).text('.3g')} deg (SFT-RL {d_ang.text('.3g')})",
        numbers={"rl_nss": over_seeds(rl_nss), "sft_nss": over_seeds(sft_nss), "nss_difference": d_nss,
                 "rl_angle_deg": over_seeds(rl_ang), "sft_angle_deg": over_seeds(sft_ang), "angle_difference_deg": d_ang,
                 "nss_ratio_sft_over_rl": over_seeds(np.asarray(sft_nss) / np.asarray(rl_nss)),
                 "planted_nss_difference": p_nss, "planted_angle_difference_deg": p_ang},
        controls=[negative("RL seed s vs RL seed s+1 as if it were SFT", neg),
                  positive("planted principal-touching (spectrum + rotation) vs off-principal update, same |dW|_F", pos)],
        figures=[figure], runs=list(runs.rl) + list(runs.sft),
        notes=[f"fp32 master weights; block matrices; k = {K}; angle = max over the U and V angles, per matrix, then mean.",
               "Positive control: the planted 'principal' update of verify.controls.updates.planted keeps the top-k "
               "subspaces invariant (block-diagonal in the singular bases), so its principal angles are 0 like the "
               "off-principal one; the SFT-like planted update therefore puts half its energy on the top-k singular values "
               f"and half on rotating U_k into its complement; |dW|_F = {PLANT_GAP_SHARE} gamma_k per matrix, "
               f"{len(PLANTED_SEEDS)} planted seeds."],
    )


# ----------------------------------------------------------------------------------------------
# 3. gate2.principal_overlap (C11, masks)


def decide_overlap(principal_minus_alpha, low_minus_alpha) -> tuple[str, object, object]:
    """RL principal overlap - alpha CI < 0 and low-magnitude overlap - alpha CI > 0 -> REPRODUCED;
    principal CI > 0 and low-magnitude CI < 0 -> NOT REPRODUCED; else INCONCLUSIVE."""
    p, l = over_seeds(principal_minus_alpha), over_seeds(low_minus_alpha)
    sp, sl = decide_positive(p), decide_positive(l)
    if sp == NOT_REPRODUCED and sl == REPRODUCED:
        return REPRODUCED, p, l
    if sp == REPRODUCED and sl == NOT_REPRODUCED:
        return NOT_REPRODUCED, p, l
    return INCONCLUSIVE, p, l


@claim("gate2.principal_overlap", paper=("C11",), title="RL's visible changes avoid principal weights, favour low-magnitude ones",
       paper_number="numbers only in figures (RL below alpha on principal, above on low-magnitude; SFT targets principal)",
       rule=f"alpha = {ALPHA}, k = {K}: RL (principal share - alpha) CI < 0 and (low-magnitude share - alpha) CI > 0 "
               "-> REPRODUCED; the opposite -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=matched)
def overlap(ctx, runs: Matched) -> Measurement:
    """gate2.principal_overlap (C11): changed-mask overlap with principal and low-magnitude masks against alpha."""
    rl_vals = [in_mask_share(changed(ctx, r), base_masks(ctx, r)) for r in runs.rl]
    sft_vals = [in_mask_share(changed(ctx, r), base_masks(ctx, r)) for r in runs.sft]
    status, p_est, l_est = decide_overlap([v[0] for v in rl_vals], [v[1] for v in rl_vals])
    sft_p, sft_l = over_seeds([v[0] for v in sft_vals]), over_seeds([v[1] for v in sft_vals])
    # negative: the real RL masks against randomly permuted base masks (no model conditioning)
    neg_vals = [in_mask_share(changed(ctx, r), permuted(base_masks(ctx, r), 7919 + i)) for i, r in enumerate(runs.rl)]
    neg, _, _ = decide_overlap([v[0] for v in neg_vals], [v[1] for v in neg_vals])
    # positive: planted RL-like mask = (not principal) & random half
    masks0 = base_masks(ctx, runs.rl[0])
    pos_vals = [in_mask_share(avoiding_principal({n: P for n, (P, _) in masks0.items()}, s), masks0) for s in PLANTED_SEEDS]
    pos, pos_p, pos_l = decide_overlap([v[0] for v in pos_vals], [v[1] for v in pos_vals])
    curves = {label: np.nanmean(np.array([[in_mask_share(changed(ctx, r), base_masks(ctx, r, a))[:2] for a in ALPHA_CURVE]
                                          for r in rs]), axis=0) + np.asarray(ALPHA_CURVE)[:, None]
              for label, rs in (("RL", runs.rl), ("SFT", runs.sft))}
    return Measurement(
        status,
        f"RL in-principal share - alpha {p_est.text('+.3f')}, in-low-magnitude - alpha {l_est.text('+.3f')}; "
        f"SFT {sft_p.text('+.3f')} / {sft_l.text('+.3f')} (alpha {ALPHA})",
        numbers={"rl_principal_minus_alpha": p_est, "rl_lowmag_minus_alpha": l_est,
                 "sft_principal_minus_alpha": sft_p, "sft_lowmag_minus_alpha": sft_l,
                 "rl_changed_density": over_seeds([v[2] for v in rl_vals]),
                 "sft_changed_density": over_seeds([v[2] for v in sft_vals]),
                 "planted_principal_minus_alpha": pos_p, "planted_lowmag_minus_alpha": pos_l},
        controls=[negative("real RL masks vs randomly permuted principal / low-magnitude masks", neg),
                  positive("planted mask = complement of the principal mask & random half", pos)],
        figures=[fig.mask_share_curves(ALPHA_CURVE, curves)], runs=list(runs.rl) + list(runs.sft),
        notes=[f"Changed masks: bitwise bf16 export of final vs base; masks from the released base; block matrices; "
               f"k = {K}, alpha = {ALPHA}. Overlap read as |M_changed & M| / |M_changed| (= theory.spectral.overlap(M, "
               "M_changed)), whose random level is the mask density alpha; pooled over the block matrices."],
    )


# ----------------------------------------------------------------------------------------------
# 4. gate2.energy (C11, continuous)


def decide_energy_vs_isotropic(ratios) -> tuple[str, object]:
    """The rule before issue 8 (kept as context): RL ratio CI < 1 (less principal energy than an isotropic
    update) -> REPRODUCED; CI > 1 -> NOT REPRODUCED; else INCONCLUSIVE."""
    est = over_seeds(ratios)
    return decide_positive(over_seeds(1.0 - np.asarray(ratios))), est


def decide_energy(rl_ratios, sft_ratios) -> tuple[str, object]:
    """Per-seed SFT - RL principal-energy ratio: CI > 0 (RL's update puts less of its energy in the top-k singular
    subspaces than SFT's at matched gain) -> REPRODUCED; CI < 0 -> NOT REPRODUCED; else INCONCLUSIVE."""
    diff = over_seeds(np.asarray(sft_ratios, float) - np.asarray(rl_ratios, float))
    return decide_positive(diff), diff


@claim("gate2.energy", paper=("C11",), title="RL's update puts less energy in the principal subspaces than SFT's",
       paper_number="no number (continuous complement of C11: RL off the principals, SFT on them)",
       rule=f"per-seed (SFT - RL) mean over block matrices of principal energy fraction / (k^2/(mn)), k = {K}, at matched "
            "gain: CI > 0 -> REPRODUCED; CI < 0 -> NOT REPRODUCED; else INCONCLUSIVE. (Until issue 8 the rule asked RL to "
            "sit below the isotropic level, which published RL pairs also exceed (1.8 to 6.7x); that old verdict is "
            "reported beside the new one.)",
       runs=matched)
def energy(ctx, runs: Matched) -> Measurement:
    """gate2.energy (C11, continuous): principal energy fraction of RL's dW against SFT's, isotropic level as context."""
    rl = [energy_ratio(block_pairs(ctx, r, master=True)) for r in runs.rl]
    sft = [energy_ratio(block_pairs(ctx, r, master=True)) for r in runs.sft]
    status, diff = decide_energy(rl, sft)
    old_status, rl_e = decide_energy_vs_isotropic(rl)
    sft_e = over_seeds(sft)
    base_pairs = block_pairs(ctx, runs.rl[0], master=True)
    off, prin, rnd = (planted_energy_ratios(base_pairs, kind) for kind in ("off_principal", "principal", "random"))
    pos, _ = decide_energy(off, prin)
    neg, _ = decide_energy(prin, off)
    return Measurement(
        status,
        f"principal energy / isotropic level: RL {rl_e.text('.3g')}, SFT {sft_e.text('.3g')} (SFT-RL {diff.text('.3g')}); "
        f"old rule (RL below isotropic): {old_status}",
        numbers={"rl_ratio": rl_e, "sft_ratio": sft_e, "sft_minus_rl": diff, "old_rule_status": old_status,
                 "planted_off_principal_ratio": over_seeds(off), "planted_principal_ratio": over_seeds(prin),
                 "planted_random_ratio": over_seeds(rnd)},
        controls=[positive("planted off-principal dW as RL, principal dW as SFT", pos),
                  negative("planted principal dW as RL, off-principal dW as SFT", neg)],
        figures=[fig.energy_bars(runs.seeds, rl, sft, K)], runs=list(runs.rl) + list(runs.sft),
        notes=[f"dW from the fp32 master weights, block matrices, k = {K}; ratio = |U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 "
               "divided by k^2/(mn), averaged over block matrices; planted controls have |dW|_F = 0.01 |W0|_F on the "
               f"base matrices, {len(PLANTED_SEEDS)} planted seeds (random planted dW gives {over_seeds(rnd).text('.3g')}).",
               f"Rule changed in issue 8: the paper claims RL against SFT, not against isotropy. Old rule's verdict here: "
               f"{old_status} (RL ratio {rl_e.text('.3g')} against 1); new rule's verdict: {status}."],
    )


# ----------------------------------------------------------------------------------------------
# 5. gate2.curvature (beyond the paper)


def decide_curvature(a_values, b_values) -> tuple[str, object]:
    """Per-seed ratio a/b (RL/SFT update curvature): CI < 1 -> REPRODUCED; CI > 1 -> NOT REPRODUCED; else INCONCLUSIVE."""
    ratio = np.asarray(a_values, np.float64) / np.asarray(b_values, np.float64)
    return decide_positive(over_seeds(1.0 - ratio)), over_seeds(ratio)


def _curvature_row(ctx, rl, sft, seed: int) -> dict:
    """Fisher Rayleigh quotients at the RL run's base of: the RL and SFT updates, the RL update's principal and
    off-principal parts, a random direction and the top Lanczos eigenvector; the principal share of the update."""
    c = FisherCurvature(ctx, rl)
    d_rl, d_sft = c.direction(rl), c.direction(sft)
    prin, rest = c.split(d_rl)
    lam, vec = c.top_eig(seed=seed)
    return {"rl": c.rq(d_rl), "sft": c.rq(d_sft), "principal": c.rq(prin), "off": c.rq(rest),
            "random": c.rq(c.random(10_000 + seed)), "top": c.rq(vec), "lanczos": lam,
            "prin_share": sum(float(np.sum(prin[k] ** 2)) for k in c.keys) / sum(float(np.sum(d_rl[k] ** 2)) for k in c.keys)}


@claim("gate2.curvature", paper=("C11", "beyond"), title="RL's update direction has lower Fisher curvature than SFT's",
       paper_number="not measured in the paper (argued: principal = high curvature)",
       rule="per-seed ratio of Fisher Rayleigh quotients RL update / SFT update at the base on the probe: CI < 1 -> "
               "REPRODUCED; CI > 1 -> NOT REPRODUCED; else INCONCLUSIVE; principal/off-principal ratio reported",
       runs=matched)
def curvature(ctx, runs: Matched) -> Measurement:
    """gate2.curvature (beyond the paper): Fisher Rayleigh quotients of RL and SFT update directions."""
    rows = [_curvature_row(ctx, rl, sft, s) for s, rl, sft in zip(runs.seeds, runs.rl, runs.sft)]
    col = lambda key: [r[key] for r in rows]  # noqa: E731
    status, ratio = decide_curvature(col("rl"), col("sft"))
    pos, pos_r = decide_curvature(col("random"), col("top"))
    neg, neg_r = decide_curvature(col("top"), col("random"))
    po = over_seeds(np.asarray(col("principal")) / np.asarray(col("off")))
    labels = {"rl": "RL update", "sft": "SFT update", "principal": "RL principal part", "off": "RL off-principal part",
              "random": "random", "top": "top eigvec (Lanczos)"}
    return Measurement(
        status,
        f"RL/SFT update curvature {ratio.text('.3g')}; RL principal/off-principal part {po.text('.3g')}; "
        f"random/top-eig {pos_r.text('.2g')}",
        numbers={"rl_over_sft": ratio, "rl_curvature": over_seeds(col("rl")), "sft_curvature": over_seeds(col("sft")),
                 "rl_principal_curvature": over_seeds(col("principal")), "rl_offprincipal_curvature": over_seeds(col("off")),
                 "principal_over_offprincipal": po, "random_curvature": over_seeds(col("random")),
                 "top_eig_curvature": over_seeds(col("top")), "lanczos_top_eigenvalue": over_seeds(col("lanczos")),
                 "rl_principal_energy_share": over_seeds(col("prin_share")), "random_over_top": pos_r, "top_over_random": neg_r},
        controls=[positive("(random direction, top Lanczos eigenvector)", pos),
                  negative("(top Lanczos eigenvector, random direction)", neg)],
        figures=[fig.curvature_dots({label: col(key) for key, label in labels.items()})], runs=list(runs.rl) + list(runs.sft),
        notes=["Fisher F = mean over masked probe completion positions of J^T (diag p - p p^T) J (logit Jacobian J) at the "
               "run's base parameters; probe rebuilt exactly as finetune() does (held-out pool, base samples, run seed).",
               "Directions live on the transformer-block kernels only (attention q/k/v/o, fc_in, fc_out; zeros elsewhere); "
               "update = fp32 master final - base; principal part = U_k U_k^T dW V_k V_k^T per matrix (k = "
               f"{K}), off-principal part = dW - principal part; Lanczos ({LANCZOS_ITERS} iterations) on F restricted "
               "to the same subspace; Fisher products from theory.curvature.fisher_vp."],
    )
