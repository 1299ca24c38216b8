"""Gate II claims: the perturbation bounds on real updates (C8), spectrum preservation (C10), the
off-principal bias of the changed mask (C11) and of the continuous update (C11, energy), and a direct
measurement of the curvature of the update directions (beyond the paper).

Views: continuous quantities (dW, spectra, angles, energies, curvature) use the fp32 master weights of
the fp32_master runs; changed masks use the released bf16 export. The base W0 is the released bf16 base
(every run starts from it; its master and export coincide). Matrices are in (out, in) layout
(``toy_models.transformer.weight_matrices``); masks and overlaps use the transformer-block matrices
(attention q/k/v/o, fc_in, fc_out).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from theory import spectral as S
from theory.curvature import fisher_vp, lanczos_top_eigs
from theory.kl import fisher_quadratic_logits
from theory.precision import changed_mask_bitwise
from toy_models.metrics import masked_mean
from toy_models.pool import build_pool, build_probe
from toy_models.transformer import apply, flat_params, matrix_name, start_index, unflatten_params
from verify.common import block_matrices, matrix_pairs, planted
from verify.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Measurement,
    claim,
    decide_both,
    decide_positive,
    negative,
    positive,
)
from verify.stats import over_seeds

K = 4  # top-k singular subspace (capped at min(m, n))
ALPHA = 0.5  # share kept by the principal and the low-magnitude masks
ALPHA_CURVE = (0.1, 0.3, 0.5, 0.7, 0.9)  # figure only
TOL_REL, TOL_ABS = 1e-9, 1e-12  # a bound is violated iff lhs > rhs (1 + TOL_REL) + TOL_ABS (fp64 arithmetic)
NEG_RHS_SCALE = 0.1  # negative control of the bounds: rhs evaluated on 0.1 dW
PLANTED_SEEDS = tuple(range(6))  # synthetic controls use their own seeds (independent of the profile)
PLANT_GAP_SHARE = 0.5  # planted spectrum controls: |dW|_F = this share of gamma_k(W0), so no subspace swap
LANCZOS_ITERS = 12
BOUNDS = ("weyl", "mirsky", "ky_fan", "wedin_safe", "wedin_paper")
HARD_BOUNDS = ("weyl", "mirsky", "ky_fan", "wedin_safe")  # theorems: must never fail


# ----------------------------------------------------------------------------------------------
# shared helpers (memoised on the Context, so several claims of one call read each run once)


def _pairs(ctx, run, master: bool, blocks_only: bool = True) -> dict:
    pairs = ctx.memo(("gate2.pairs", str(run.directory), master), lambda: matrix_pairs(run, "final", master=master))
    return block_matrices(pairs) if blocks_only else pairs


def _k(W) -> int:
    return min(K, *W.shape)


def _runs(ctx):
    seeds = ctx.profile.seeds
    return seeds, [ctx.rl(s) for s in seeds], [ctx.sft(s) for s in seeds]


def main_runs(p):
    """The runs every Gate II claim reads: matched RL and SFT of every seed."""
    return [p.rl(s) for s in p.seeds] + [p.sft(s) for s in p.seeds]


# ----------------------------------------------------------------------------------------------
# 1. gate2.bounds (C8)


def bound_values(W0, dW, dW_rhs=None) -> dict[str, tuple[float, float]]:
    """(lhs, rhs) of every Gate II bound, in fp64. ``dW_rhs`` (negative control) replaces dW in the rhs only."""
    k = _k(W0)
    out = {}
    with jax.enable_x64(True):
        W0, dW = np.asarray(W0, np.float64), np.asarray(dW, np.float64)
        real = {"weyl": S.weyl(W0, dW), "mirsky": S.mirsky(W0, dW), "ky_fan": S.ky_fan(W0, dW, k),
                "wedin_safe": S.wedin_safe(W0, dW, k), "wedin_paper": S.wedin_paper(W0, dW, k)}
        if dW_rhs is None:
            alt = real
        else:
            d2 = np.asarray(dW_rhs, np.float64)
            alt = {"weyl": S.weyl(W0, d2), "mirsky": S.mirsky(W0, d2), "ky_fan": S.ky_fan(W0, d2, k),
                   "wedin_safe": S.wedin_safe(W0, d2, k), "wedin_paper": S.wedin_paper(W0, d2, k)}
        for name in BOUNDS:
            out[name] = (float(real[name][0]), float(alt[name][1]))
    return out


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


def _top_pair_planted(W0, frac: float = 0.1):
    """Equality case: dW = frac sigma_1 u_1 v_1^T raises sigma_1 by exactly |dW|_2 (Weyl and Mirsky tight)."""
    U, s, Vt = np.linalg.svd(W0, full_matrices=False)
    return frac * s[0] * np.outer(U[:, 0], Vt[0])


@claim("gate2.bounds", paper=("C8",), title="Weyl, Mirsky, Ky Fan and Wedin bounds hold on real updates",
       paper_number="theorems (paper Gate II); Wedin paper form uses the unperturbed gap",
       rule=f"0 violations of Weyl, Mirsky, Ky Fan (k={K}) and Wedin-safe (where |dW|_2 < gamma_k) over every real "
               "(W0, W1) pair of RL and SFT, all seeds -> REPRODUCED; any -> NOT REPRODUCED; paper-form Wedin "
               "violations reported as a count",
       runs=main_runs)
def bounds(ctx, runs) -> Measurement:
    """gate2.bounds (C8): Weyl, Mirsky, Ky Fan, both Wedin forms on every real (W0, W1) pair."""
    seeds, rl_runs, sft_runs = _runs(ctx)
    records, labels, neg_records = [], [], []
    for method, runs in (("RL", rl_runs), ("SFT", sft_runs)):
        for r in runs:
            for master in (True, False):
                for name, (W0, W1) in _pairs(ctx, r, master, blocks_only=False).items():
                    dW = W1 - W0
                    records.append(bound_values(W0, dW))
                    labels.append((method, "fp32 master" if master else "bf16 export", name))
                    if master:
                        neg_records.append(bound_values(W0, dW, dW_rhs=NEG_RHS_SCALE * dW))
    status, counts = decide_bounds(records)
    neg, neg_counts = decide_bounds(neg_records)
    base_blocks = [W0 for W0, _ in _pairs(ctx, rl_runs[0], True, blocks_only=False).values()]
    pos, pos_counts = decide_bounds([bound_values(W0, _top_pair_planted(W0)) for W0 in base_blocks])

    tight = {}
    for name in BOUNDS:
        t = np.array([r[name][0] / r[name][1] for r in records if np.isfinite(r[name][1]) and r[name][1] > 0])
        tight[name] = t
    numbers: dict = {}
    for name in BOUNDS:
        t = tight[name]
        numbers[f"{name}_violations"] = float(counts[name]["violations"])
        numbers[f"{name}_applicable_pairs"] = float(counts[name]["applicable"])
        numbers[f"{name}_tightness_median"] = float(np.median(t)) if t.size else float("nan")
        numbers[f"{name}_tightness_worst"] = float(np.max(t)) if t.size else float("nan")
    numbers["pairs"] = float(len(records))
    numbers["negative_control_violations"] = float(sum(neg_counts[n]["violations"] for n in HARD_BOUNDS))

    fig, ax = plt.subplots(figsize=(6, 3.8))
    rng = np.random.default_rng(0)
    for i, name in enumerate(BOUNDS):
        t = tight[name]
        t = t[t > 0]
        if t.size:
            ax.scatter(i + rng.uniform(-0.2, 0.2, t.size), t, s=6, alpha=0.5)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="bound (lhs = rhs)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(BOUNDS)), ["Weyl", "Mirsky", f"Ky Fan (k={K})", "Wedin safe", "Wedin paper"])
    ax.set_ylabel("tightness lhs / rhs (dimensionless, log)")
    ax.set_xlabel("bound")
    ax.set_title(f"C8: Gate II bounds on {len(records)} real (W0, W1) pairs")
    ax.legend(fontsize=7)
    wp = counts["wedin_paper"]
    headline = (f"{sum(counts[n]['violations'] for n in HARD_BOUNDS)} violations of Weyl/Mirsky/KyFan/Wedin-safe on "
                f"{len(records)} pairs (Wedin-safe applicable on {counts['wedin_safe']['applicable']}); median tightness "
                + ", ".join(f"{n} {numbers[n + '_tightness_median']:.2g}" for n in HARD_BOUNDS)
                + f"; paper-form Wedin violations {wp['violations']}/{wp['applicable']}")
    return Measurement(
        status, headline, numbers=numbers,
        controls=[negative(f"lhs of the real pair, rhs of {NEG_RHS_SCALE} dW (mismatched)", neg),
                  positive("planted dW = 0.1 sigma_1 u_1 v_1^T on base matrices (equality case)", pos)],
        figures=[fig], runs=rl_runs + sft_runs,
        notes=[f"Every weight matrix (blocks, embeddings, unembedding) of RL and SFT runs of seeds {list(seeds)}, final "
               f"snapshot, both the fp32 master and the bf16 export; k = min({K}, m, n); fp64 arithmetic; a violation is "
               f"lhs > rhs (1 + {TOL_REL:g}) + {TOL_ABS:g}.",
               f"Wedin safe form only where |dW|_2 < gamma_k ({counts['wedin_safe']['applicable']} of {len(records)} pairs).",
               f"Negative control violations per bound: { {n: neg_counts[n]['violations'] for n in BOUNDS} }; "
               f"positive control violations: { {n: pos_counts[n]['violations'] for n in BOUNDS} }."],
    )


# ----------------------------------------------------------------------------------------------
# 2. gate2.spectrum (C10)


def spectral_drift(pairs: dict) -> tuple[float, float]:
    """(NSS, largest top-k principal angle in degrees over U and V), each averaged over the matrices."""
    nss, ang = [], []
    with jax.enable_x64(True):
        for W0, W1 in pairs.values():
            W0, W1 = np.asarray(W0, np.float64), np.asarray(W1, np.float64)
            nss.append(float(S.normalized_spectral_shift(W0, W1)))
            au, av = S.principal_angles(W0, W1, _k(W0))
            ang.append(float(np.degrees(max(np.max(np.asarray(au)), np.max(np.asarray(av))))))
    return float(np.mean(nss)), float(np.mean(ang))


def decide_spectrum(rl_nss, sft_nss, rl_ang, sft_ang) -> tuple[str, object, object]:
    """Per-seed (SFT - RL) NSS difference CI > 0 and (SFT - RL) angle difference CI > 0 -> REPRODUCED;
    both CIs < 0 -> NOT REPRODUCED; else INCONCLUSIVE."""
    d_nss = over_seeds(np.asarray(sft_nss) - np.asarray(rl_nss))
    d_ang = over_seeds(np.asarray(sft_ang) - np.asarray(rl_ang))
    return decide_both(d_nss, d_ang), d_nss, d_ang


def _planted_rotating(W0, scale: float, k: int, seed: int):
    """An SFT-like planted update touching the principal part: half of |dW|_F^2 rescales the top-k singular
    values (U_k diag(g) V_k^T), half rotates the top-k left subspace into its complement (U_perp A V_k^T)."""
    rng = np.random.default_rng(seed)
    U, s, Vt = np.linalg.svd(W0, full_matrices=True)
    Uk, Up, Vk = U[:, :k], U[:, k:], Vt[:k].T
    spec = Uk @ np.diag(rng.standard_normal(k)) @ Vk.T
    rot = Up @ rng.standard_normal((Up.shape[1], k)) @ Vk.T
    spec *= scale / np.sqrt(2) / np.linalg.norm(spec)
    rot *= scale / np.sqrt(2) / max(np.linalg.norm(rot), 1e-300)
    return spec + rot


def _planted_spectrum(ctx, base_pairs: dict):
    """Per planted seed: (NSS, angle) of the rotating (SFT-like) and of the off-principal (RL-like) update of the
    same Frobenius norm PLANT_GAP_SHARE gamma_k(W0) on every base block matrix."""
    out = {"rot": ([], []), "off": ([], [])}
    for seed in PLANTED_SEEDS:
        for kind in ("rot", "off"):
            pairs = {}
            for i, (name, (W0, _)) in enumerate(base_pairs.items()):
                k = _k(W0)
                s = np.linalg.svd(W0, compute_uv=False)
                scale = PLANT_GAP_SHARE * (s[k - 1] - (s[k] if k < len(s) else 0.0))
                d = (_planted_rotating(W0, scale, k, 1000 * seed + i) if kind == "rot"
                     else planted(W0, "off_principal", scale, k, 1000 * seed + i))
                pairs[name] = (W0, W0 + d)
            nss, ang = spectral_drift(pairs)
            out[kind][0].append(nss)
            out[kind][1].append(ang)
    return out


@claim("gate2.spectrum", paper=("C10",), title="RL keeps the spectrum and top subspaces; SFT moves them more",
       paper_number="numbers only in figures",
       rule=f"per-seed (SFT - RL) normalised spectral shift CI > 0 and (SFT - RL) largest top-{K} principal angle "
               "CI > 0 (block-matrix means) -> REPRODUCED; both < 0 -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=main_runs)
def spectrum(ctx, runs) -> Measurement:
    """gate2.spectrum (C10): normalised spectral shift and top-k principal angles, RL against SFT."""
    seeds, rl_runs, sft_runs = _runs(ctx)
    rl = [spectral_drift(_pairs(ctx, r, True)) for r in rl_runs]
    sft = [spectral_drift(_pairs(ctx, r, True)) for r in sft_runs]
    rl_nss, rl_ang = [a for a, _ in rl], [b for _, b in rl]
    sft_nss, sft_ang = [a for a, _ in sft], [b for _, b in sft]
    status, d_nss, d_ang = decide_spectrum(rl_nss, sft_nss, rl_ang, sft_ang)
    # negative control: RL of seed s against RL of seed s+1 (cyclic) playing SFT
    shift = lambda v: list(v[1:]) + list(v[:1])  # noqa: E731
    neg, _, _ = decide_spectrum(rl_nss, shift(rl_nss), rl_ang, shift(rl_ang))
    pl = _planted_spectrum(ctx, _pairs(ctx, rl_runs[0], True))
    pos, p_nss, p_ang = decide_spectrum(pl["off"][0], pl["rot"][0], pl["off"][1], pl["rot"][1])

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    x = np.arange(len(seeds))
    for ax, (a, b, lab) in zip(axes, ((rl_nss, sft_nss, "normalised spectral shift (dimensionless)"),
                                      (rl_ang, sft_ang, f"largest top-{K} principal angle (degrees)"))):
        ax.bar(x - 0.2, a, 0.4, label="RL")
        ax.bar(x + 0.2, b, 0.4, label="SFT")
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_xlabel("seed")
        ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("C10: spectrum drift of block matrices, RL vs SFT at matched gain (fp32 master)", fontsize=9)
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
        figures=[fig], runs=rl_runs + sft_runs,
        notes=[f"fp32 master weights; block matrices; k = {K}; angle = max over the U and V angles, per matrix, then mean.",
               "Positive control: the planted 'principal' update of verify.common.planted keeps the top-k subspaces "
               "invariant (block-diagonal in the singular bases), so its principal angles are 0 like the off-principal "
               "one; the SFT-like planted update therefore puts half its energy on the top-k singular values and half "
               f"on rotating U_k into its complement; |dW|_F = {PLANT_GAP_SHARE} gamma_k per matrix, "
               f"{len(PLANTED_SEEDS)} planted seeds."],
    )


# ----------------------------------------------------------------------------------------------
# 3. gate2.principal_overlap (C11, masks)


def _masks(W0, alpha: float):
    P = np.asarray(S.principal_mask(W0, _k(W0), alpha))
    L = np.asarray(S.low_magnitude_mask(W0, alpha))
    return P, L


def base_masks(ctx, run, alpha: float = ALPHA) -> dict:
    """{block matrix: (principal mask, low-magnitude mask)} of the released base."""
    return ctx.memo(("gate2.masks", str(run.directory), alpha),
                 lambda: {n: _masks(W0, alpha) for n, (W0, _) in _pairs(ctx, run, False).items()})


def changed_masks(ctx, run) -> dict:
    """{block matrix: changed mask} of a run, bf16 export, base against final."""
    return {n: changed_mask_bitwise(W0.astype(np.float32), W1.astype(np.float32)) for n, (W0, W1) in _pairs(ctx, run, False).items()}


def in_mask_share(changed: dict, masks: dict) -> tuple[float, float, float]:
    """Share of changed block weights in the principal mask and in the low-magnitude mask (pooled over the
    block matrices), each minus the pooled density of that mask (the random level, alpha)."""
    n_ch = sum(int(changed[k].sum()) for k in changed)
    inter_p = sum(int((changed[k] & masks[k][0]).sum()) for k in changed)
    inter_l = sum(int((changed[k] & masks[k][1]).sum()) for k in changed)
    size = sum(changed[k].size for k in changed)
    dens_p = sum(int(masks[k][0].sum()) for k in changed) / size
    dens_l = sum(int(masks[k][1].sum()) for k in changed) / size
    if n_ch == 0:
        return float("nan"), float("nan"), 0.0
    return inter_p / n_ch - dens_p, inter_l / n_ch - dens_l, n_ch / size


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


def _permuted(masks: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {n: tuple(rng.permutation(m.ravel()).reshape(m.shape) for m in pl) for n, pl in masks.items()}


@claim("gate2.principal_overlap", paper=("C11",), title="RL's visible changes avoid principal weights, favour low-magnitude ones",
       paper_number="numbers only in figures (RL below alpha on principal, above on low-magnitude; SFT targets principal)",
       rule=f"alpha = {ALPHA}, k = {K}: RL (principal share - alpha) CI < 0 and (low-magnitude share - alpha) CI > 0 "
               "-> REPRODUCED; the opposite -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=main_runs)
def overlap(ctx, runs) -> Measurement:
    """gate2.principal_overlap (C11): changed-mask overlap with principal and low-magnitude masks against alpha."""
    seeds, rl_runs, sft_runs = _runs(ctx)
    rl_vals = [in_mask_share(changed_masks(ctx, r), base_masks(ctx, r)) for r in rl_runs]
    sft_vals = [in_mask_share(changed_masks(ctx, r), base_masks(ctx, r)) for r in sft_runs]
    status, p_est, l_est = decide_overlap([v[0] for v in rl_vals], [v[1] for v in rl_vals])
    sft_p, sft_l = over_seeds([v[0] for v in sft_vals]), over_seeds([v[1] for v in sft_vals])
    # negative: the real RL masks against randomly permuted base masks (no model conditioning)
    neg_vals = [in_mask_share(changed_masks(ctx, r), _permuted(base_masks(ctx, r), 7919 + i)) for i, r in enumerate(rl_runs)]
    neg, _, _ = decide_overlap([v[0] for v in neg_vals], [v[1] for v in neg_vals])
    # positive: planted RL-like mask = (not principal) & random half
    masks0 = base_masks(ctx, rl_runs[0])
    pos_vals = []
    for s in PLANTED_SEEDS:
        rng = np.random.default_rng(s)
        planted_mask = {n: (~P) & (rng.random(P.shape) < 0.5) for n, (P, _) in masks0.items()}
        pos_vals.append(in_mask_share(planted_mask, masks0))
    pos, pos_p, pos_l = decide_overlap([v[0] for v in pos_vals], [v[1] for v in pos_vals])

    # figure: in-mask share minus level over alpha (seed means)
    curves = {}
    for label, runs in (("RL", rl_runs), ("SFT", sft_runs)):
        vals = np.array([[in_mask_share(changed_masks(ctx, r), base_masks(ctx, r, a))[:2] for a in ALPHA_CURVE] for r in runs])
        curves[label] = np.nanmean(vals, axis=0) + np.asarray(ALPHA_CURVE)[:, None]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for label, ls in (("RL", "-"), ("SFT", "--")):
        ax.plot(ALPHA_CURVE, curves[label][:, 0], "o" + ls, label=f"{label}: principal mask")
        ax.plot(ALPHA_CURVE, curves[label][:, 1], "s" + ls, label=f"{label}: low-magnitude mask")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random level (alpha)")
    ax.set_xlabel("mask share alpha")
    ax.set_ylabel("share of changed weights inside the mask")
    ax.set_title("C11: where the bf16-visible changes land (block matrices)")
    ax.legend(fontsize=6)
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
        figures=[fig], runs=rl_runs + sft_runs,
        notes=[f"Changed masks: bitwise bf16 export of final vs base; masks from the released base; block matrices; "
               f"k = {K}, alpha = {ALPHA}. Overlap read as |M_changed & M| / |M_changed| (= theory.spectral.overlap(M, "
               "M_changed)), whose random level is the mask density alpha; pooled over the block matrices."],
    )


# ----------------------------------------------------------------------------------------------
# 4. gate2.energy (C11, continuous)


def energy_ratio(pairs: dict) -> float:
    """Mean over matrices of principal energy fraction / k^2/(mn) (1 = isotropic update)."""
    vals = []
    with jax.enable_x64(True):
        for W0, W1 in pairs.values():
            W0, dW = np.asarray(W0, np.float64), np.asarray(W1 - W0, np.float64)
            k = _k(W0)
            vals.append(float(S.principal_energy_fraction(W0, dW, k)) / S.principal_energy_random_level(*W0.shape, k))
    return float(np.nanmean(vals))


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
       runs=main_runs)
def energy(ctx, runs) -> Measurement:
    """gate2.energy (C11, continuous): principal energy fraction of RL's dW against SFT's, isotropic level as context."""
    seeds, rl_runs, sft_runs = _runs(ctx)
    rl = [energy_ratio(_pairs(ctx, r, True)) for r in rl_runs]
    sft = [energy_ratio(_pairs(ctx, r, True)) for r in sft_runs]
    status, diff = decide_energy(rl, sft)
    old_status, rl_e = decide_energy_vs_isotropic(rl)
    sft_e = over_seeds(sft)
    base_pairs = _pairs(ctx, rl_runs[0], True)

    def planted_ratios(kind):
        return [energy_ratio({n: (W0, W0 + planted(W0, kind, 0.01 * np.linalg.norm(W0), _k(W0), 1000 * s + i))
                              for i, (n, (W0, _)) in enumerate(base_pairs.items())}) for s in PLANTED_SEEDS]

    off, prin, rnd = planted_ratios("off_principal"), planted_ratios("principal"), planted_ratios("random")
    pos, _ = decide_energy(off, prin)
    neg, _ = decide_energy(prin, off)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(seeds))
    ax.bar(x - 0.2, rl, 0.4, label="RL")
    ax.bar(x + 0.2, sft, 0.4, label="SFT")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="isotropic level k^2/(mn)")
    ax.set_xticks(x, [f"seed {s}" for s in seeds])
    ax.set_xlabel("seed")
    ax.set_ylabel("principal energy fraction / k^2/(mn) (dimensionless)", fontsize=8)
    ax.set_title(f"C11: energy of dW in the top-{K} singular subspaces (fp32 master)", fontsize=9)
    ax.legend(fontsize=7)
    return Measurement(
        status,
        f"principal energy / isotropic level: RL {rl_e.text('.3g')}, SFT {sft_e.text('.3g')} (SFT-RL {diff.text('.3g')}); "
        f"old rule (RL below isotropic): {old_status}",
        numbers={"rl_ratio": rl_e, "sft_ratio": sft_e, "sft_minus_rl": diff, "old_rule_status": old_status,
                 "planted_off_principal_ratio": over_seeds(off), "planted_principal_ratio": over_seeds(prin),
                 "planted_random_ratio": over_seeds(rnd)},
        controls=[positive("planted off-principal dW as RL, principal dW as SFT", pos),
                  negative("planted principal dW as RL, off-principal dW as SFT", neg)],
        figures=[fig], runs=rl_runs + sft_runs,
        notes=[f"dW from the fp32 master weights, block matrices, k = {K}; ratio = |U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 "
               "divided by k^2/(mn), averaged over block matrices; planted controls have |dW|_F = 0.01 |W0|_F on the "
               f"base matrices, {len(PLANTED_SEEDS)} planted seeds (random planted dW gives {over_seeds(rnd).text('.3g')}).",
               f"Rule changed in issue 8: the paper claims RL against SFT, not against isotropy. Old rule's verdict here: "
               f"{old_status} (RL ratio {rl_e.text('.3g')} against 1); new rule's verdict: {status}."],
    )


# ----------------------------------------------------------------------------------------------
# 5. gate2.curvature (beyond the paper)


def _is_block_kernel(dotted: str, arr) -> bool:
    name = matrix_name(dotted)
    return name is not None and name.startswith("block") and np.ndim(arr) == 2 and dotted.endswith("kernel")


def _logits_fn(graphdef, tokens_NL, prompt_len):
    start = start_index(tokens_NL[:, :prompt_len])
    return lambda p: apply(graphdef, p, tokens_NL[:, :-1], start)[0][:, prompt_len - 1:].astype(jnp.float32)


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _fisher_rq(graphdef, params, direction, tokens_NL, mask_NC, prompt_len):
    """d^T F d (token mean over the masked completion positions; F = sum J^T (diag p - p p^T) J): one jvp."""
    logits, dz = jax.jvp(_logits_fn(graphdef, tokens_NL, prompt_len), (params,), (direction,))
    return masked_mean(2.0 * fisher_quadratic_logits(jax.nn.log_softmax(logits, axis=-1), dz), mask_NC)


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _fisher_vp(graphdef, params, direction, tokens_NL, mask_NC, prompt_len):
    """F d with the same F and normalisation as ``_fisher_rq`` (theory.curvature.fisher_vp)."""
    return fisher_vp(_logits_fn(graphdef, tokens_NL, prompt_len), params, direction, mask_NC)


class _Curv:
    """Fisher curvature of block-kernel directions at the base parameters on one run's probe set."""

    def __init__(self, ctx, run):
        base = ctx.base(run.spec.base)
        cfg = run.cfg
        t = cfg.train
        P, C = base.prompt_len, base.completion_len
        self.graphdef, self.P = base.graphdef, P
        self.flat0 = {k: np.asarray(v, np.float32) for k, v in run.snapshot("base", master=True).items()}
        self.template = base.params
        self.params0 = unflatten_params(base.params, self.flat0)
        heldout = build_pool(cfg.base.corpus.tasks, cfg.base.corpus.size, t.eval_problems, P, C, t.seed, heldout=True)
        probe = build_probe(base.graphdef, cfg.base.model, self.params0, heldout, t.probe_size, P, C, t.seed)
        self.tokens, self.mask = probe.tokens_NL, probe.mask_NC
        self.keys = sorted(k for k, v in self.flat0.items() if _is_block_kernel(k, v))

    def tree(self, d: dict):
        return unflatten_params(self.template, {k: (d[k] if k in d else np.zeros_like(v)) for k, v in self.flat0.items()})

    def rq(self, d: dict) -> float:
        """d^T F d / |d|^2 (nats per token per unit squared parameter norm)."""
        norm2 = sum(float(np.sum(np.square(d[k], dtype=np.float64))) for k in self.keys)
        return float(_fisher_rq(self.graphdef, self.params0, self.tree(d), self.tokens, self.mask, self.P)) / norm2

    def top_eig(self, seed: int, iters: int = LANCZOS_ITERS):
        """Top eigenvalue and eigenvector of F restricted to the block kernels (theory.curvature Lanczos)."""

        def matvec(d):
            fv = flat_params(_fisher_vp(self.graphdef, self.params0, self.tree(d), self.tokens, self.mask, self.P))
            return {k: fv[k] for k in self.keys}

        example = {k: np.zeros(self.flat0[k].shape, np.float32) for k in self.keys}
        evals, vecs = lanczos_top_eigs(matvec, example, 1, iters, jax.random.key(seed))
        return float(evals[0]), {k: np.asarray(v, np.float32) for k, v in vecs[0].items()}

    def direction(self, run) -> dict:
        f1 = run.snapshot("final", master=True)
        return {k: np.asarray(f1[k], np.float32) - self.flat0[k] for k in self.keys}

    def split(self, d: dict) -> tuple[dict, dict]:
        """(principal part U_k U_k^T dW V_k V_k^T, the rest dW - principal) per block matrix, in (out, in) layout."""
        prin, rest = {}, {}
        for k in self.keys:
            W0 = self.flat0[k].T.astype(np.float64)  # kernels are (in, out)
            U, _, Vt = np.linalg.svd(W0, full_matrices=False)
            kk = _k(W0)
            Uk, Vk = U[:, :kk], Vt[:kk].T
            dW = d[k].T.astype(np.float64)
            p = Uk @ (Uk.T @ dW @ Vk) @ Vk.T
            prin[k] = p.T.astype(np.float32)
            rest[k] = (dW - p).T.astype(np.float32)
        return prin, rest

    def random(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal(self.flat0[k].shape).astype(np.float32) for k in self.keys}


def decide_curvature(a_values, b_values) -> tuple[str, object]:
    """Per-seed ratio a/b (RL/SFT update curvature): CI < 1 -> REPRODUCED; CI > 1 -> NOT REPRODUCED; else INCONCLUSIVE."""
    ratio = np.asarray(a_values, np.float64) / np.asarray(b_values, np.float64)
    return decide_positive(over_seeds(1.0 - ratio)), over_seeds(ratio)


@claim("gate2.curvature", paper=("C11", "beyond"), title="RL's update direction has lower Fisher curvature than SFT's",
       paper_number="not measured in the paper (argued: principal = high curvature)",
       rule="per-seed ratio of Fisher Rayleigh quotients RL update / SFT update at the base on the probe: CI < 1 -> "
               "REPRODUCED; CI > 1 -> NOT REPRODUCED; else INCONCLUSIVE; principal/off-principal ratio reported",
       runs=main_runs)
def curvature(ctx, runs) -> Measurement:
    """gate2.curvature (beyond the paper): Fisher Rayleigh quotients of RL and SFT update directions."""
    seeds, rl_runs, sft_runs = _runs(ctx)
    rows = []
    for s, rl, sft in zip(seeds, rl_runs, sft_runs):
        c = _Curv(ctx, rl)
        d_rl, d_sft = c.direction(rl), c.direction(sft)
        prin, rest = c.split(d_rl)
        lam, vec = c.top_eig(seed=s)
        rows.append({"rl": c.rq(d_rl), "sft": c.rq(d_sft), "principal": c.rq(prin), "off": c.rq(rest),
                     "random": c.rq(c.random(10_000 + s)), "top": c.rq(vec), "lanczos": lam,
                     "prin_share": sum(float(np.sum(prin[k] ** 2)) for k in c.keys) / sum(float(np.sum(d_rl[k] ** 2)) for k in c.keys)})
    col = lambda key: [r[key] for r in rows]  # noqa: E731
    status, ratio = decide_curvature(col("rl"), col("sft"))
    pos, pos_r = decide_curvature(col("random"), col("top"))
    neg, neg_r = decide_curvature(col("top"), col("random"))
    po = over_seeds(np.asarray(col("principal")) / np.asarray(col("off")))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    names = ["RL update", "SFT update", "RL principal part", "RL off-principal part", "random", "top eigvec (Lanczos)"]
    keys = ["rl", "sft", "principal", "off", "random", "top"]
    for i, key in enumerate(keys):
        ax.scatter(np.full(len(rows), i), col(key), s=18)
        ax.plot([i - 0.25, i + 0.25], [np.mean(col(key))] * 2, "k-")
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), names, rotation=25, fontsize=7)
    ax.set_ylabel("Fisher Rayleigh quotient d^T F d / |d|^2\n(nats/token per unit squared norm)", fontsize=8)
    ax.set_xlabel("direction (block matrices only)")
    ax.set_title("Curvature of update directions at the base (probe set; dots = seeds)", fontsize=9)
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
        figures=[fig], runs=rl_runs + sft_runs,
        notes=["Fisher F = mean over masked probe completion positions of J^T (diag p - p p^T) J (logit Jacobian J) at the "
               "run's base parameters; probe rebuilt exactly as finetune() does (held-out pool, base samples, run seed).",
               "Directions live on the transformer-block kernels only (attention q/k/v/o, fc_in, fc_out; zeros elsewhere); "
               "update = fp32 master final - base; principal part = U_k U_k^T dW V_k V_k^T per matrix (k = "
               f"{K}), off-principal part = dW - principal part; Lanczos ({LANCZOS_ITERS} iterations) on F restricted "
               "to the same subspace; Fisher products from theory.curvature.fisher_vp."],
    )


