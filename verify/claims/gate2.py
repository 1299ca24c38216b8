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

import dataclasses

import numpy as np

from verify.comparison import CUSTOMARY, NEXT_SEED, PLACEBO, compare, size_note
from verify.controls.masks import avoiding_principal
from verify.controls.updates import (
    PLANT_GAP_SHARE,
    PLANTED_SEEDS,
    planted_energy_ratios,
    planted_spectrum,
    top_pair_planted,
)
from verify.experiments.compared import Compared, compared
from verify.experiments.matched import Matched, matched
from verify.figures import gates as fig
from verify.figures.common import comparison_dots, rule_dots
from verify.measures.curvature import LANCZOS_ITERS, FisherCurvature
from verify.measures.masks import ALPHA, base_masks, changed, in_mask_share, null_changed
from verify.measures.size import at_equal_size
from verify.measures.spectra import BOUNDS, K, bound_values, drift, energy_ratio
from verify.measures.weights import block_pairs, pairs
from verify.registry import FAIL, PASS, Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval, all_of, check
from verify.stats import log2_ratio, over_seeds

ALPHA_CURVE = (0.1, 0.3, 0.5, 0.7, 0.9)  # figure only
TOL_REL, TOL_ABS = 1e-9, 1e-12  # a bound is violated iff lhs > rhs (1 + TOL_REL) + TOL_ABS (fp64 arithmetic)
NEG_RHS_SCALE = 0.1  # negative control of the bounds: rhs evaluated on 0.1 dW
HARD_BOUNDS = ("weyl", "mirsky", "ky_fan", "wedin_safe")  # theorems: must never fail
FACTOR_2 = "a priori: a factor 2 between comparator and RL"
NSS_RULE = AtLeast("log2(NSS_comparator / NSS_RL)", 1.0, FACTOR_2)
ANGLE_RULE = AtLeast(f"log2(angle_comparator / angle_RL), largest top-{K} principal angle", 1.0, FACTOR_2)
ENERGY_RULE = AtLeast(f"log2(E_comparator / E_RL), top-{K} principal energy / isotropic level", 1.0, FACTOR_2)
CURVATURE_RULE = AtLeast("log2(RQ_comparator / RQ_RL), Fisher Rayleigh quotient of the update", 1.0, FACTOR_2)
PRINCIPAL_RULE = AtLeast("changed share in the principal mask - alpha", -0.01, "a priori", direction=-1)
LOW_RULE = AtLeast("changed share in the low-magnitude mask - alpha", 0.01, "a priori")
EQUAL_SIZE_NOTE = "the comparator being SFT at the RL rate read at the RL run's ||dW|| / ||W|| (decisive; SFT at its " \
                  "customary rate and matched gain reported beside it)"


def joint_controls(*comparisons) -> list:
    """The placebo and next-seed controls of a claim decided on several statistics at once: each reads all_of the
    statistics' outcomes for that comparator."""
    key = {"placebo": PLACEBO, "negative": NEXT_SEED}
    return [dataclasses.replace(c, status=all_of(*(m.outcomes[key[c.kind]] for m in comparisons)))
            for c in comparisons[0].controls()]


# ----------------------------------------------------------------------------------------------
# 1. gate2.bounds (C8)


def decide_bounds(records: list[dict]) -> tuple[str, dict]:
    """Check: zero violations of Weyl, Mirsky, Ky Fan and Wedin-safe (only where it applies, i.e. finite rhs,
    |dW|_2 < gamma_k) -> PASS; any violation -> FAIL. Paper-form Wedin is counted, not decisive."""
    counts = {}
    for name in BOUNDS:
        lhs = np.array([r[name][0] for r in records])
        rhs = np.array([r[name][1] for r in records])
        ok = np.isfinite(rhs)
        counts[name] = {"violations": int(np.sum(ok & (lhs > rhs * (1 + TOL_REL) + TOL_ABS))), "applicable": int(ok.sum())}
    status = PASS if sum(counts[n]["violations"] for n in HARD_BOUNDS) == 0 else FAIL
    return status, counts


@claim("gate2.bounds", paper=("C8",), title="Weyl, Mirsky, Ky Fan and Wedin bounds hold on real updates",
       paper_number="theorems (paper Gate II); Wedin paper form uses the unperturbed gap",
       rule=f"check: 0 violations of Weyl, Mirsky, Ky Fan (k={K}) and Wedin-safe (where |dW|_2 < gamma_k) over every "
            "real (W0, W1) pair of RL and SFT, all seeds -> PASS; any -> FAIL; paper-form Wedin violations reported as a "
            "count",
       runs=matched, kind="check")
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
    violations = sum(counts[n]["violations"] for n in HARD_BOUNDS)
    return Measurement(
        status, headline, numbers=numbers,
        outcomes={"bounds hold": check("violations of Weyl, Mirsky, Ky Fan, Wedin-safe (0)", status == PASS, violations)},
        controls=[negative(f"lhs of the real pair, rhs of {NEG_RHS_SCALE} dW (mismatched)", neg),
                  positive("planted dW = 0.1 sigma_1 u_1 v_1^T on base matrices (equality case)", pos)],
        figures=[fig.bound_tightness(tight, ["Weyl", "Mirsky", f"Ky Fan (k={K})", "Wedin safe", "Wedin paper"], len(records))],
        runs={"rl": list(runs.rl), "sft": list(runs.sft)},
        notes=[f"Every weight matrix (blocks, embeddings, unembedding) of RL and SFT runs of seeds {list(runs.seeds)}, final "
               f"snapshot, both the fp32 master and the bf16 export; k = min({K}, m, n); fp64 arithmetic; a violation is "
               f"lhs > rhs (1 + {TOL_REL:g}) + {TOL_ABS:g}.",
               f"Wedin safe form only where |dW|_2 < gamma_k ({counts['wedin_safe']['applicable']} of {len(records)} pairs).",
               f"Negative control violations per bound: { {n: neg_counts[n]['violations'] for n in BOUNDS} }; "
               f"positive control violations: { {n: pos_counts[n]['violations'] for n in BOUNDS} }."],
    )


# ----------------------------------------------------------------------------------------------
# 2. gate2.spectrum (C10)


def decide_spectrum(nss_log2, angle_log2) -> tuple[str, object, object]:
    """C10 rule on per-seed log2(comparator / RL) of the normalised spectral shift and of the largest top-k principal
    angle: both 95 % intervals wholly above 1 -> REPRODUCED; either wholly below -> NOT REPRODUCED; else INCONCLUSIVE.
    Returns (status, NSS outcome, angle outcome)."""
    a, b = NSS_RULE.decide(Interval.of(nss_log2)), ANGLE_RULE.decide(Interval.of(angle_log2))
    return all_of(a, b), a, b


@claim("gate2.spectrum", paper=("C10",), title="RL keeps the spectrum and top subspaces; SFT moves them more",
       paper_number="numbers only in figures",
       rule=f"{NSS_RULE.text}; and {ANGLE_RULE.text} (block-matrix means, fp32 master); {EQUAL_SIZE_NOTE}",
       runs=compared)
def spectrum(ctx, runs: Compared) -> Measurement:
    """gate2.spectrum (C10): normalised spectral shift and top-k principal angles, comparator against RL at equal
    ||dW|| / ||W||; planted rotation against off-principal (positive), next-seed RL and RL at the SFT rate (placebo)."""
    nss = compare(ctx, runs, lambda r, c: log2_ratio(drift(ctx, c)[0], drift(ctx, r)[0]), NSS_RULE, by="relative_update_norm")
    ang = compare(ctx, runs, lambda r, c: log2_ratio(drift(ctx, c)[1], drift(ctx, r)[1]), ANGLE_RULE, by="relative_update_norm")
    status = all_of(nss.decisive, ang.decisive)
    pl = planted_spectrum(block_pairs(ctx, runs.rl[0], master=True))
    p_nss = [log2_ratio(c, r) for c, r in zip(pl["rot"][0], pl["off"][0])]
    p_ang = [log2_ratio(c, r) for c, r in zip(pl["rot"][1], pl["off"][1])]
    pos, _, _ = decide_spectrum(p_nss, p_ang)
    col = lambda rs, i: over_seeds([drift(ctx, r)[i] for r in rs])  # noqa: E731
    return Measurement(
        status,
        f"at equal ||dW||/||W||: log2(NSS_SFT / NSS_RL) {nss.decisive.interval.text('+.2f')}, log2(angle_SFT / angle_RL) "
        f"{ang.decisive.interval.text('+.2f')}; at SFT's customary rate {nss.outcomes[CUSTOMARY].interval.text('+.2f')} / "
        f"{ang.outcomes[CUSTOMARY].interval.text('+.2f')}; placebo {nss.outcomes[PLACEBO].interval.text('+.2f')} / "
        f"{ang.outcomes[PLACEBO].interval.text('+.2f')}",
        numbers={"rl_nss": col(runs.rl, 0), "sft_equal_size_nss": col(nss.equal_size, 0), "sft_nss": col(runs.sft, 0),
                 "rl_angle_deg": col(runs.rl, 1), "sft_equal_size_angle_deg": col(nss.equal_size, 1),
                 "sft_angle_deg": col(runs.sft, 1),
                 **{f"log2_nss_ratio_{k.replace(' ', '_')}": over_seeds(v) for k, v in nss.values.items()},
                 **{f"log2_angle_ratio_{k.replace(' ', '_')}": over_seeds(v) for k, v in ang.values.items()},
                 "planted_log2_nss_ratio": over_seeds(p_nss), "planted_log2_angle_ratio": over_seeds(p_ang)},
        controls=[positive("planted principal-touching (spectrum + rotation) vs off-principal update, same |dW|_F", pos),
                  *joint_controls(nss, ang)],
        outcomes={"NSS, SFT against RL at equal ||dW||/||W||": nss.decisive,
                  "top-k angle, SFT against RL at equal ||dW||/||W||": ang.decisive},
        descriptive={"NSS, SFT at its customary rate, matched gain": nss.outcomes[CUSTOMARY],
                     "top-k angle, SFT at its customary rate, matched gain": ang.outcomes[CUSTOMARY]},
        figures=[comparison_dots({"NSS": nss.values, "angle": ang.values}, NSS_RULE.floor, "log2(comparator / RL) per seed",
                                 "C10: spectrum drift of block matrices, comparator against RL (fp32 master)")],
        runs=nss.runs,
        notes=[size_note(ctx, nss, "relative_update_norm"),
               f"fp32 master weights; block matrices; k = {K}; angle = max over the U and V angles, per matrix, then mean.",
               "Positive control: the planted 'principal' update of verify.controls.updates.planted keeps the top-k "
               "subspaces invariant (block-diagonal in the singular bases), so its principal angles are 0 like the "
               "off-principal one; the SFT-like planted update therefore puts half its energy on the top-k singular values "
               f"and half on rotating U_k into its complement; |dW|_F = {PLANT_GAP_SHARE} gamma_k per matrix, "
               f"{len(PLANTED_SEEDS)} planted seeds."],
    )


# ----------------------------------------------------------------------------------------------
# 3. gate2.principal_overlap (C11, masks)


def decide_overlap(principal_minus_alpha, low_minus_alpha) -> tuple[str, object, object]:
    """C11 mask rule on per-seed shares: (principal share - alpha) wholly below -0.01 and (low-magnitude share - alpha)
    wholly above +0.01 -> REPRODUCED; either wholly on the other side of its floor -> NOT REPRODUCED; else
    INCONCLUSIVE. Returns (status, principal outcome, low-magnitude outcome)."""
    p, low = PRINCIPAL_RULE.decide(Interval.of(principal_minus_alpha)), LOW_RULE.decide(Interval.of(low_minus_alpha))
    return all_of(p, low), p, low


def _overlap_runs(p) -> dict:
    c = compared(p)
    return {"rl": c.rl, "sft": c.sft, "sft_size": c.sft_size}


@claim("gate2.principal_overlap", paper=("C11",), title="RL's visible changes avoid principal weights, favour low-magnitude ones",
       paper_number="numbers only in figures (RL below alpha on principal, above on low-magnitude; SFT targets principal)",
       rule=f"alpha = {ALPHA}, k = {K}, RL at matched gain: {PRINCIPAL_RULE.text}; and {LOW_RULE.text}; negative control: "
            "the same rule on magnitude-matched null draws of the RL masks; SFT at equal drift ratio and at its customary "
            "rate through the same rule (descriptive)",
       runs=_overlap_runs)
def overlap(ctx, runs) -> Measurement:
    """gate2.principal_overlap (C11): changed-mask overlap with principal and low-magnitude masks against alpha."""
    rl = list(runs["rl"])
    equal = [at_equal_size(ctx, s, r, "drift_ratio") for s, r in zip(runs["sft_size"], rl)]
    share = lambda rs: [in_mask_share(changed(ctx, r), base_masks(ctx, r)) for r in rs]  # noqa: E731
    rl_v, eq_v, sft_v = share(rl), share(equal), share(runs["sft"])
    status, p_out, l_out = decide_overlap([v[0] for v in rl_v], [v[1] for v in rl_v])
    null_v = [in_mask_share(null_changed(ctx, r), base_masks(ctx, r)) for r in rl]
    neg, _, _ = decide_overlap([v[0] for v in null_v], [v[1] for v in null_v])
    masks0 = base_masks(ctx, rl[0])  # positive: planted RL-like mask = (not principal) & random half
    pos_v = [in_mask_share(avoiding_principal({n: P for n, (P, _) in masks0.items()}, s), masks0) for s in PLANTED_SEEDS]
    pos, _, _ = decide_overlap([v[0] for v in pos_v], [v[1] for v in pos_v])
    _, eq_p, eq_l = decide_overlap([v[0] for v in eq_v], [v[1] for v in eq_v])
    _, sft_p, sft_l = decide_overlap([v[0] for v in sft_v], [v[1] for v in sft_v])
    curves = {label: np.nanmean(np.array([[in_mask_share(changed(ctx, r), base_masks(ctx, r, a))[:2] for a in ALPHA_CURVE]
                                          for r in rs]), axis=0) + np.asarray(ALPHA_CURVE)[:, None]
              for label, rs in (("RL", rl), ("SFT", runs["sft"]))}
    est = lambda vals, i: over_seeds([v[i] for v in vals])  # noqa: E731
    dots = rule_dots({"RL principal": [v[0] for v in rl_v], "null principal": [v[0] for v in null_v],
                      "SFT eq. size principal": [v[0] for v in eq_v], "RL low-mag": [v[1] for v in rl_v],
                      "null low-mag": [v[1] for v in null_v], "SFT eq. size low-mag": [v[1] for v in eq_v]},
                     "changed share in the mask - alpha", "C11: principal floor -0.01, low-magnitude floor +0.01",
                     floors={"principal floor": PRINCIPAL_RULE.floor, "low-magnitude floor": LOW_RULE.floor})
    return Measurement(
        status,
        f"RL in-principal share - alpha {p_out.interval.text('+.3f')}, in-low-magnitude - alpha {l_out.interval.text('+.3f')}; "
        f"magnitude-matched null draws {est(null_v, 0).text('+.3f')} / {est(null_v, 1).text('+.3f')}; SFT at equal drift "
        f"ratio {eq_p.interval.text('+.3f')} / {eq_l.interval.text('+.3f')}, at its customary rate "
        f"{sft_p.interval.text('+.3f')} / {sft_l.interval.text('+.3f')} (alpha {ALPHA})",
        numbers={"rl_principal_minus_alpha": est(rl_v, 0), "rl_lowmag_minus_alpha": est(rl_v, 1),
                 "null_principal_minus_alpha": est(null_v, 0), "null_lowmag_minus_alpha": est(null_v, 1),
                 "sft_equal_size_principal_minus_alpha": est(eq_v, 0), "sft_equal_size_lowmag_minus_alpha": est(eq_v, 1),
                 "sft_principal_minus_alpha": est(sft_v, 0), "sft_lowmag_minus_alpha": est(sft_v, 1),
                 "rl_changed_density": est(rl_v, 2), "sft_equal_size_changed_density": est(eq_v, 2),
                 "sft_changed_density": est(sft_v, 2),
                 "planted_principal_minus_alpha": est(pos_v, 0), "planted_lowmag_minus_alpha": est(pos_v, 1)},
        controls=[negative("magnitude-matched null draws of the RL masks (theory.null.null_mask)", neg),
                  positive("planted mask = complement of the principal mask & random half", pos)],
        outcomes={"RL principal share - alpha": p_out, "RL low-magnitude share - alpha": l_out},
        descriptive={"SFT at equal drift ratio: principal": eq_p, "SFT at equal drift ratio: low-magnitude": eq_l,
                     "SFT at its customary rate: principal": sft_p, "SFT at its customary rate: low-magnitude": sft_l},
        figures=[dots, fig.mask_share_curves(ALPHA_CURVE, curves)],
        runs={"rl": rl, "sft": list(runs["sft"]), "sft at the rl rate, equal size": equal},
        notes=[f"Changed masks: bitwise bf16 export of final vs base; masks from the released base; block matrices; "
               f"k = {K}, alpha = {ALPHA}. Overlap read as |M_changed & M| / |M_changed| (= theory.spectral.overlap(M, "
               "M_changed)), whose random level is the mask density alpha; pooled over the block matrices.",
               "Negative control: per RL run and block matrix one draw of the magnitude-matched null (each weight "
               "changes with the probability its equal-ULP stratum's fitted drift gives, seeded by "
               "theory.null.null_rng(matrix, seed)); if it reads REPRODUCED the mask signature is explained by magnitude.",
               "SFT at equal drift ratio: " + ", ".join(f"step {v.step}" for v in equal) + " of SFT at the RL rate."],
    )


# ----------------------------------------------------------------------------------------------
# 4. gate2.energy (C11, continuous)


def decide_energy(log2_ratios):
    """C11 energy rule on per-seed log2(E_comparator / E_RL), E the principal energy fraction over its isotropic
    level: 95 % interval wholly above 1 -> REPRODUCED; wholly below -> NOT REPRODUCED; else INCONCLUSIVE."""
    return ENERGY_RULE.decide(Interval.of(log2_ratios))


def _energy(ctx, run) -> float:
    return ctx.memo(("energy_ratio", run.directory.name), lambda: energy_ratio(block_pairs(ctx, run, master=True)))


@claim("gate2.energy", paper=("C11",), title="RL's update puts less energy in the principal subspaces than SFT's",
       paper_number="no number (continuous complement of C11: RL off the principals, SFT on them)",
       rule=f"{ENERGY_RULE.text} (mean over block matrices of |U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 / (k^2/(mn))); "
            f"{EQUAL_SIZE_NOTE}",
       runs=compared)
def energy(ctx, runs: Compared) -> Measurement:
    """gate2.energy (C11, continuous): principal energy of the comparator's dW against RL's at equal ||dW|| / ||W||;
    planted principal against off-principal (positive), next-seed RL and RL at the SFT rate (placebo)."""
    cmp = compare(ctx, runs, lambda r, c: log2_ratio(_energy(ctx, c), _energy(ctx, r)), ENERGY_RULE, by="relative_update_norm")
    base_pairs = block_pairs(ctx, runs.rl[0], master=True)
    off, prin, rnd = (planted_energy_ratios(base_pairs, kind) for kind in ("off_principal", "principal", "random"))
    pos_values = [log2_ratio(c, r) for c, r in zip(prin, off)]
    e = lambda rs: over_seeds([_energy(ctx, r) for r in rs])  # noqa: E731
    return Measurement(
        cmp.decisive.status,
        f"principal energy / isotropic level: RL {e(runs.rl).text('.3g')}, SFT at equal ||dW||/||W|| "
        f"{e(cmp.equal_size).text('.3g')} (log2 ratio {cmp.decisive.interval.text('+.2f')}); SFT at its customary rate "
        f"{e(runs.sft).text('.3g')} ({cmp.outcomes[CUSTOMARY].interval.text('+.2f')}); placebo "
        f"{cmp.outcomes[PLACEBO].interval.text('+.2f')}",
        numbers={"rl_ratio": e(runs.rl), "sft_equal_size_ratio": e(cmp.equal_size), "sft_ratio": e(runs.sft),
                 "placebo_ratio": e(runs.placebo),
                 **{f"log2_ratio_{k.replace(' ', '_')}": over_seeds(v) for k, v in cmp.values.items()},
                 "planted_off_principal_ratio": over_seeds(off), "planted_principal_ratio": over_seeds(prin),
                 "planted_random_ratio": over_seeds(rnd), "planted_log2_ratio": over_seeds(pos_values)},
        controls=[positive("planted principal dW as comparator, off-principal dW as RL", decide_energy(pos_values).status),
                  *cmp.controls()],
        outcomes={"SFT against RL at equal ||dW||/||W||": cmp.decisive}, descriptive=cmp.descriptive(),
        figures=[comparison_dots({"energy": cmp.values}, ENERGY_RULE.floor, "log2(comparator / RL) per seed",
                                 f"C11: energy of dW in the top-{K} singular subspaces, comparator against RL"),
                 fig.energy_bars(runs.seeds, [_energy(ctx, r) for r in runs.rl], [_energy(ctx, r) for r in cmp.equal_size], K)],
        runs=cmp.runs,
        notes=[size_note(ctx, cmp, "relative_update_norm"),
               f"dW from the fp32 master weights, block matrices, k = {K}; ratio = |U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 "
               "divided by k^2/(mn), averaged over block matrices; planted controls have |dW|_F = 0.01 |W0|_F on the "
               f"base matrices, {len(PLANTED_SEEDS)} planted seeds (random planted dW gives {over_seeds(rnd).text('.3g')}).",
               "The bars of the second figure are RL and SFT at equal ||dW||/||W||; 1 is the isotropic level."],
    )


# ----------------------------------------------------------------------------------------------
# 5. gate2.curvature (beyond the paper)


def decide_curvature(log2_ratios):
    """Curvature rule on per-seed log2(RQ_comparator / RQ_RL), RQ the Fisher Rayleigh quotient of the update direction
    at the base: 95 % interval wholly above 1 -> REPRODUCED; wholly below -> NOT REPRODUCED; else INCONCLUSIVE."""
    return CURVATURE_RULE.decide(Interval.of(log2_ratios))


def _fisher(ctx, rl) -> FisherCurvature:
    return ctx.memo(("fisher_curvature", rl.directory.name), lambda: FisherCurvature(ctx, rl))


def update_rq(ctx, rl, run) -> float:
    """Fisher Rayleigh quotient of ``run``'s update direction at the base, on the probe set of the RL run ``rl``."""
    c = _fisher(ctx, rl)
    return ctx.memo(("update_rq", rl.directory.name, run.directory.name), lambda: c.rq(c.direction(run)))


def _curvature_row(ctx, rl, seed: int) -> dict:
    """Fisher Rayleigh quotients at the RL run's base of: the RL update's principal and off-principal parts, a random
    direction and the top Lanczos eigenvector; the principal share of the update."""
    c = _fisher(ctx, rl)
    d_rl = c.direction(rl)
    prin, rest = c.split(d_rl)
    lam, vec = c.top_eig(seed=seed)
    return {"principal": c.rq(prin), "off": c.rq(rest), "random": c.rq(c.random(10_000 + seed)), "top": c.rq(vec),
            "lanczos": lam,
            "prin_share": sum(float(np.sum(prin[k] ** 2)) for k in c.keys) / sum(float(np.sum(d_rl[k] ** 2)) for k in c.keys)}


@claim("gate2.curvature", paper=("C11", "beyond"), title="RL's update direction has lower Fisher curvature than SFT's",
       paper_number="not measured in the paper (argued: principal = high curvature)",
       rule=f"{CURVATURE_RULE.text} (at the base, on the RL run's probe set); {EQUAL_SIZE_NOTE}",
       runs=compared)
def curvature(ctx, runs: Compared) -> Measurement:
    """gate2.curvature (beyond the paper): Fisher Rayleigh quotient of the comparator's update direction against RL's
    at equal ||dW|| / ||W||; top eigenvector against a random direction (positive), next-seed RL, placebo."""
    cmp = compare(ctx, runs, lambda r, c: log2_ratio(update_rq(ctx, r, c), update_rq(ctx, r, r)), CURVATURE_RULE,
                  by="relative_update_norm")
    rows = [_curvature_row(ctx, rl, s) for s, rl in zip(runs.seeds, runs.rl)]
    col = lambda key: [r[key] for r in rows]  # noqa: E731
    pos_values = [log2_ratio(t, r) for t, r in zip(col("top"), col("random"))]
    rq = lambda rs: [update_rq(ctx, rl, r) for rl, r in zip(runs.rl, rs)]  # noqa: E731
    po = over_seeds(np.asarray(col("principal")) / np.asarray(col("off")))
    labels = {"principal": "RL principal part", "off": "RL off-principal part", "random": "random",
              "top": "top eigvec (Lanczos)"}
    dots = {"RL update": rq(runs.rl), "SFT update, equal size": rq(cmp.equal_size), "SFT update, customary": rq(runs.sft),
            **{label: col(key) for key, label in labels.items()}}
    return Measurement(
        cmp.decisive.status,
        f"log2(RQ_SFT / RQ_RL) at equal ||dW||/||W|| {cmp.decisive.interval.text('+.2f')}; at SFT's customary rate "
        f"{cmp.outcomes[CUSTOMARY].interval.text('+.2f')}; placebo {cmp.outcomes[PLACEBO].interval.text('+.2f')}; "
        f"RL principal/off-principal part {po.text('.3g')}",
        numbers={"rl_curvature": over_seeds(rq(runs.rl)), "sft_equal_size_curvature": over_seeds(rq(cmp.equal_size)),
                 "sft_curvature": over_seeds(rq(runs.sft)),
                 **{f"log2_ratio_{k.replace(' ', '_')}": over_seeds(v) for k, v in cmp.values.items()},
                 "rl_principal_curvature": over_seeds(col("principal")), "rl_offprincipal_curvature": over_seeds(col("off")),
                 "principal_over_offprincipal": po, "random_curvature": over_seeds(col("random")),
                 "top_eig_curvature": over_seeds(col("top")), "lanczos_top_eigenvalue": over_seeds(col("lanczos")),
                 "rl_principal_energy_share": over_seeds(col("prin_share")), "log2_top_over_random": over_seeds(pos_values)},
        controls=[positive("top Lanczos eigenvector as comparator, a random direction as RL", decide_curvature(pos_values).status),
                  *cmp.controls()],
        outcomes={"SFT against RL at equal ||dW||/||W||": cmp.decisive}, descriptive=cmp.descriptive(),
        figures=[comparison_dots({"curvature": cmp.values}, CURVATURE_RULE.floor, "log2(comparator / RL) per seed",
                                 "Fisher curvature of the update direction, comparator against RL"),
                 fig.curvature_dots(dots)],
        runs=cmp.runs,
        notes=[size_note(ctx, cmp, "relative_update_norm"),
               "Fisher F = mean over masked probe completion positions of J^T (diag p - p p^T) J (logit Jacobian J) at the "
               "run's base parameters; probe rebuilt exactly as finetune() does (held-out pool, base samples, run seed); "
               "every comparator of seed s is measured on the probe set of RL seed s.",
               "Directions live on the transformer-block kernels only (attention q/k/v/o, fc_in, fc_out; zeros elsewhere); "
               "update = fp32 master final - base; principal part = U_k U_k^T dW V_k V_k^T per matrix (k = "
               f"{K}), off-principal part = dW - principal part; Lanczos ({LANCZOS_ITERS} iterations) on F restricted "
               "to the same subspace; Fisher products from theory.curvature.fisher_vp."],
    )
