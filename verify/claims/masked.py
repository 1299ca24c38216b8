"""Case study of masked RL fine-tuning (docs/science.md claim C14): RL restricted, by a mask fixed once from
the base weights, to the principal weights gains less than dense RL and than RL on the "safe" weights
(non-principal or low-magnitude), and the safe mask's KL-to-base curve follows the dense one.

Masks (``toy_models.masks``, block matrices only; everything else stays trainable): principal (top 50 % of
the rank-4 reconstruction of W0), non_principal (its complement), low_magnitude (bottom 58.6 % of |W0|),
safe (their union), random (a uniform mask with the safe mask's count in every matrix, drawn per seed), and
the dense reference. Every run has the same fixed length (the case-study RL run of
``verify.experiments.cases``), so gains are compared at equal steps, as in the paper's table.
"""

from __future__ import annotations

import numpy as np

from verify.controls.numbers import planted_masked
from verify.experiments.cases import MASK_KINDS, case_seeds, masked as masked_runs
from verify.figures import cases as fig
from verify.measures.training import frozen_changes, gain_curve, kl_curve, kl_distance, mask_share
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

PAPER_320 = {"dense": 57.44, "principal": 53.82, "non_principal": 55.40, "low_magnitude": 56.69, "safe": 56.24,
             "random": 55.34}  # the paper's score after 320 steps (mean of MATH500, AMC23, AIME24, AIME25)


def decide_masked(dense, principal, safe, kl_distances: dict, frozen_changed: int = 0) -> tuple[str, object, object]:
    """C14 rule on per-seed final gains at equal steps (paired by seed) and per-seed KL-curve distances to dense
    ({mask: [distance per seed]}): REPRODUCED iff the CIs of dense - principal and safe - principal both lie above
    0 and the safe mask has the smallest seed-mean KL distance to dense; NOT REPRODUCED iff either CI lies below
    0 (principal-only gains more) or the safe mask's KL curve is the farthest from dense; else INCONCLUSIVE.
    Whatever the gains, INCONCLUSIVE when a masked coordinate changed (``frozen_changed`` > 0: a mask did not hold)."""
    dp = over_seeds(np.asarray(dense, float) - np.asarray(principal, float))
    sp = over_seeds(np.asarray(safe, float) - np.asarray(principal, float))
    if frozen_changed:
        return INCONCLUSIVE, dp, sp
    means = {k: float(np.mean(v)) for k, v in kl_distances.items()}
    closest, farthest = min(means, key=means.get), max(means, key=means.get)
    if decide_positive(dp) == REPRODUCED and decide_positive(sp) == REPRODUCED and closest == "safe":
        return REPRODUCED, dp, sp
    if decide_positive(dp) == NOT_REPRODUCED or decide_positive(sp) == NOT_REPRODUCED or farthest == "safe":
        return NOT_REPRODUCED, dp, sp
    return INCONCLUSIVE, dp, sp


@claim("masked.rl", paper=("C14",), title="masked RL: principal-only gains least; the safe mask tracks dense RL",
       paper_number="DS-Qwen-1.5B, 320 steps: dense 57.44, principal 53.82, non-principal 55.40, low-magnitude 56.69, "
                    "safe 56.24, random 55.34; safe's KL curve follows dense, principal's rises slowest",
       rule="fixed-length RL under each mask, >= 3 seeds, paired by seed: CI of dense - principal final gain > 0, CI of "
            "safe - principal > 0 and the safe mask's KL-to-base curve closest to dense (relative L1, seed mean) -> "
            "REPRODUCED; either gain CI < 0 or safe's KL curve the farthest -> NOT REPRODUCED; else INCONCLUSIVE",
       runs=masked_runs)
def masked(ctx, runs) -> Measurement:
    """masked.rl (C14): gain and KL-to-base curves of RL under fixed masks, against dense RL."""
    p = ctx.profile
    seeds = case_seeds(p)
    gains = {k: [r.summary["gain"] for r in v] for k, v in runs.items()}
    kl = {k: [kl_curve(r)[1] for r in v] for k, v in runs.items()}
    dist = {k: [kl_distance(a, b) for a, b in zip(kl[k], kl["dense"])] for k in MASK_KINDS if k != "dense"}
    frozen = {k: [frozen_changes(r) for r in v] for k, v in runs.items() if k != "dense"}
    leaked = sum(b for v in frozen.values() for b, _ in v)
    status, dp, sp = decide_masked(gains["dense"], gains["principal"], gains["safe"], dist, leaked)
    pos, _, _ = decide_masked(*planted_masked(61))
    neg, _, _ = decide_masked(gains["dense"], gains["dense"], gains["dense"],
                              {k: [1.0] * len(seeds) for k in dist} | {"safe": [2.0] * len(seeds)})
    densities = {k: mask_share(runs[k][0]) for k in MASK_KINDS if k != "dense"}
    auc = {k: [float(np.mean(gain_curve(r)[1][1:])) for r in v] for k, v in runs.items()}
    g = {k: over_seeds(v) for k, v in gains.items()}
    gain_curves = {k: (gain_curve(v[0])[0], np.mean([gain_curve(r)[1] for r in v], axis=0)) for k, v in runs.items()}
    kl_curves = {k: (kl_curve(runs[k][0])[0], np.mean(kl[k], axis=0)) for k in runs}
    return Measurement(
        status,
        "final gain " + ", ".join(f"{k} {g[k].text('+.3f')}" for k in MASK_KINDS)
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
        figures=[fig.masked_runs(MASK_KINDS, gain_curves, kl_curves, g, len(seeds), p.cases.rl_steps)],
        runs=[r for v in runs.values() for r in v],
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
    for k in MASK_KINDS:
        lines.append(f"| {k} | {PAPER_320[k]:.2f} | {est_text(gain.get(k))} | {est_text(dist.get(k), '.2f') if k != 'dense' else '0'} |")
    return "\n".join(lines + [""] + figure_lines(v))
