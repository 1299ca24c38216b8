"""Case study of masked RL fine-tuning (docs/science.md claim C14): RL restricted, by a mask fixed once from
the base weights, to the principal weights gains less than dense RL and than RL on the "safe" weights
(non-principal or low-magnitude), and the safe mask's KL-to-base curve follows the dense one.

Masks (``toy_models.masks``, block matrices only; everything else stays trainable): principal (top 50 % of
the rank-4 reconstruction of W0), non_principal (its complement), low_magnitude (bottom 58.6 % of |W0|),
safe (their union), random (a uniform mask with the safe mask's count in every matrix, drawn per seed), and
the dense reference. Every run has the same fixed length (the case-study RL run of
``verify.claims.consistency``), so gains are compared at equal steps, as in the paper's table.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from theory.precision import changed_mask_fp32
from toy_models.finetune import RunSpec
from toy_models.masks import MaskConfig, build_masks, mask_density
from verify.claims.consistency import case_seeds, est_text, figure_lines, rl_run
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
from verify.stats import over_seeds

KINDS = ("dense", "principal", "non_principal", "low_magnitude", "safe", "random")
PAPER_320 = {"dense": 57.44, "principal": 53.82, "non_principal": 55.40, "low_magnitude": 56.69, "safe": 56.24,
             "random": 55.34}  # the paper's score after 320 steps (mean of MATH500, AMC23, AIME24, AIME25)


def masked_spec(p, seed: int, kind: str) -> RunSpec:
    """The case-study RL run of ``seed`` under mask ``kind`` ('dense' = no mask; the random mask drawn with the
    run's seed)."""
    spec = rl_run(p, seed)
    if kind == "dense":
        return spec
    return spec.replace(mask=MaskConfig(kind, seed=seed if kind == "random" else 0))


def _masked_runs(p) -> list[RunSpec]:
    return [masked_spec(p, s, k) for k in KINDS for s in case_seeds(p)]


def gain_curve(run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, held-out accuracy gain over the base) at every evaluation of a run (step 0 included)."""
    recs = [m for m in run.metrics() if "heldout/mean" in m]
    base = next(m["heldout/mean"] for m in recs if m["step"] == 0)
    return np.array([m["step"] for m in recs]), np.array([m["heldout/mean"] - base for m in recs])


def kl_curve(run) -> tuple[np.ndarray, np.ndarray]:
    """(steps, exact token-mean KL(pi || base) on the probe set) at every step (the paper's Figure 9 quantity)."""
    recs = [m for m in run.metrics() if "kl/to_base_exact" in m]
    return np.array([m["step"] for m in recs]), np.array([m["kl/to_base_exact"] for m in recs])


def kl_distance(kl, kl_dense) -> float:
    """Relative L1 distance of two KL-to-base curves on the same steps: sum |KL - KL_dense| / sum KL_dense."""
    kl, kl_dense = np.asarray(kl, float), np.asarray(kl_dense, float)
    n = min(len(kl), len(kl_dense))
    return float(np.sum(np.abs(kl[:n] - kl_dense[:n])) / max(np.sum(kl_dense[:n]), 1e-300))


def frozen_changes(run) -> tuple[int, int]:
    """(masked coordinates whose float32 master bits differ between the base and the final snapshot, masked
    coordinates): the first must be 0. The masks are rebuilt from the run's stored base as the trainer builds them."""
    base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
    masks = build_masks(base, run.spec.mask)
    bad = sum(int(np.count_nonzero(changed_mask_fp32(base[k], final[k]) & ~masks[k])) for k in base)
    return bad, sum(int(np.count_nonzero(~m)) for m in masks.values())


def decide_masked(dense, principal, safe, kl_distances: dict) -> tuple[str, object, object]:
    """C14 rule on per-seed final gains at equal steps (paired by seed) and per-seed KL-curve distances to dense
    ({mask: [distance per seed]}): REPRODUCED iff the CIs of dense - principal and safe - principal both lie above
    0 and the safe mask has the smallest seed-mean KL distance to dense; NOT REPRODUCED iff either CI lies below
    0 (principal-only gains more) or the safe mask's KL curve is the farthest from dense; else INCONCLUSIVE."""
    dp = over_seeds(np.asarray(dense, float) - np.asarray(principal, float))
    sp = over_seeds(np.asarray(safe, float) - np.asarray(principal, float))
    means = {k: float(np.mean(v)) for k, v in kl_distances.items()}
    closest, farthest = min(means, key=means.get), max(means, key=means.get)
    if decide_positive(dp) == REPRODUCED and decide_positive(sp) == REPRODUCED and closest == "safe":
        return REPRODUCED, dp, sp
    if decide_positive(dp) == NOT_REPRODUCED or decide_positive(sp) == NOT_REPRODUCED or farthest == "safe":
        return NOT_REPRODUCED, dp, sp
    return INCONCLUSIVE, dp, sp


def _planted(seed: int) -> tuple[list, list, list, dict]:
    """Synthetic gains and KL distances with the paper's ordering: dense > safe > principal, safe's KL closest."""
    rng = np.random.default_rng(seed)
    dense = 0.10 + 0.005 * rng.standard_normal(3)
    return (list(dense), list(dense - 0.04 + 0.005 * rng.standard_normal(3)), list(dense - 0.01 + 0.005 * rng.standard_normal(3)),
            {"principal": [0.6, 0.5, 0.55], "non_principal": [0.3, 0.35, 0.3], "low_magnitude": [0.2, 0.25, 0.2],
             "safe": [0.1, 0.12, 0.08], "random": [0.3, 0.3, 0.25]})


@claim("masked.rl", paper=("C14",), title="masked RL: principal-only gains least; the safe mask tracks dense RL",
       paper_number="DS-Qwen-1.5B, 320 steps: dense 57.44, principal 53.82, non-principal 55.40, low-magnitude 56.69, "
                    "safe 56.24, random 55.34; safe's KL curve follows dense, principal's rises slowest",
       rule="fixed-length RL under each mask, >= 3 seeds, paired by seed: CI of dense - principal final gain > 0, CI of "
            "safe - principal > 0 and the safe mask's KL-to-base curve closest to dense (relative L1, seed mean) -> "
            "REPRODUCED; either gain CI < 0 or safe's KL curve the farthest -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=_masked_runs)
def masked(ctx, runs) -> Measurement:
    """masked.rl (C14): gain and KL-to-base curves of RL under fixed masks, against dense RL."""
    p = ctx.profile
    seeds = case_seeds(p)
    runs = {k: [ctx.run(masked_spec(p, s, k)) for s in seeds] for k in KINDS}
    gains = {k: [r.summary["gain"] for r in v] for k, v in runs.items()}
    kl = {k: [kl_curve(r)[1] for r in v] for k, v in runs.items()}
    dist = {k: [kl_distance(a, b) for a, b in zip(kl[k], kl["dense"])] for k in KINDS if k != "dense"}
    status, dp, sp = decide_masked(gains["dense"], gains["principal"], gains["safe"], dist)
    pos, _, _ = decide_masked(*_planted(61))
    neg, _, _ = decide_masked(gains["dense"], gains["dense"], gains["dense"], {k: [1.0] * len(seeds) for k in dist} | {"safe": [2.0] * len(seeds)})
    frozen = {k: [frozen_changes(r) for r in v] for k, v in runs.items() if k != "dense"}
    leaked = sum(b for v in frozen.values() for b, _ in v)
    if leaked:
        status = INCONCLUSIVE
    densities = {k: mask_density(build_masks(runs[k][0].snapshot("base", master=True), runs[k][0].spec.mask))["block_matrices"]
                 for k in KINDS if k != "dense"}
    auc = {k: [float(np.mean(gain_curve(r)[1][1:])) for r in v] for k, v in runs.items()}

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, k in enumerate(KINDS):
        color = f"C{i}"
        curves = [gain_curve(r) for r in runs[k]]
        axes[0].plot(curves[0][0], np.mean([c[1] for c in curves], axis=0), "o-", ms=3, color=color, label=k)
        steps, _ = kl_curve(runs[k][0])
        axes[1].plot(steps, np.mean(kl[k], axis=0), color=color, label=k)
        e = over_seeds(gains[k])
        axes[2].bar(i, e.mean, yerr=[[e.mean - e.low], [e.high - e.mean]], color=color, capsize=3)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("held-out accuracy gain over the base (fraction)", fontsize=8)
    axes[0].set_title(f"C14: task gain under fixed masks (mean of {len(seeds)} seeds)", fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("exact KL(pi || base) on the probe (nats/token)", fontsize=8)
    axes[1].set_title("C14: KL to the base (the paper's Figure 9)", fontsize=9)
    axes[2].set_xticks(range(len(KINDS)), KINDS, rotation=30, fontsize=7)
    axes[2].set_xlabel("mask")
    axes[2].set_ylabel(f"final gain after {p.cases.rl_steps} steps (fraction, 95 % CI)", fontsize=8)
    axes[2].set_title("C14: final gain at equal steps", fontsize=9)
    for ax in axes[:2]:
        ax.legend(fontsize=6)
    g = {k: over_seeds(v) for k, v in gains.items()}
    return Measurement(
        status,
        "final gain " + ", ".join(f"{k} {g[k].text('+.3f')}" for k in KINDS)
        + f"; dense - principal {dp.text('+.3f')}, safe - principal {sp.text('+.3f')}; KL distance to dense "
        + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in dist.items())
        + f"; frozen coordinates changed: {leaked}",
        numbers={"final_gain": g, "dense_minus_principal": dp, "safe_minus_principal": sp,
                 "mean_gain_over_curve": {k: over_seeds(v) for k, v in auc.items()},
                 "kl_distance_to_dense": {k: over_seeds(v) for k, v in dist.items()},
                 "final_kl_to_base": {k: over_seeds([c[-1] for c in v]) for k, v in kl.items()},
                 "mask_density_block_matrices": densities,
                 "frozen_coordinates_changed": leaked,
                 "frozen_coordinates": int(sum(n for v in frozen.values() for _, n in v)),
                 "paper_score_320_steps": PAPER_320},
        controls=[positive("planted gains and KL distances in the paper's order", pos),
                  negative("dense runs relabelled as principal-only and safe (no difference; safe's KL farthest)", neg)],
        figures=[fig], runs=[r for v in runs.values() for r in v],
        notes=[f"{p.cases.rl_steps} steps per run (fixed, no matched stop), seeds {list(seeds)}, grpo_kl, fp32 master; "
               f"held-out accuracy every {p.cases.curve_every} steps; gains paired by seed (same first samples).",
               "Mask shares of the block matrices: " + ", ".join(f"{k} {v:.3f}" for k, v in densities.items())
               + " (paper: 50, 50, 58.6, 74.0, 74.0 %); embeddings, unembedding, norms and biases stay trainable.",
               "Every masked run was checked bit for bit: float32 master weights of masked coordinates equal the base's "
               f"({leaked} changed of {sum(n for v in frozen.values() for _, n in v)}).",
               "KL distance = sum over steps |KL_mask - KL_dense| / sum KL_dense, per seed against the dense run of the "
               "same seed."],
    )


@report_section
def masked_section(results) -> str:
    """report.md section 'Case study C14': per mask, the paper's score after 320 steps beside our final gain and
    KL-curve distance to dense RL."""
    v = {c.id: verdict for c, verdict in results}.get("masked.rl")
    if v is None:
        return ""
    n = v.numbers
    gain, dist = n.get("final_gain") or {}, n.get("kl_distance_to_dense") or {}
    lines = ["## Case study C14: masked RL", "",
             f"Verdict {v.status}: {v.headline}.", "",
             "| mask | paper: score after 320 steps (%) | ours: final gain at equal steps | ours: KL-curve distance to dense |",
             "|---|---|---|---|"]
    for k in KINDS:
        lines.append(f"| {k} | {PAPER_320[k]:.2f} | {est_text(gain.get(k))} | {est_text(dist.get(k), '.2f') if k != 'dense' else '0'} |")
    return "\n".join(lines + [""] + figure_lines(v))
