"""Case study of masked RL fine-tuning (docs/science.md claim C14): RL restricted, by a mask fixed once from
the base weights, to the principal weights gains less than dense RL; RL on the "safe" weights (non-principal or
low-magnitude) tracks dense RL, and gains more than a random mask of the same density.

Masks (``toy_models.masks``, block matrices only; everything else stays trainable): principal (top 50 % of
the rank-4 reconstruction of W0), non_principal (its complement), low_magnitude (bottom 58.6 % of |W0|),
safe (their union), random (a uniform mask with the safe mask's count in every matrix, drawn per seed), and
the dense reference. Every run has the same fixed length (the case-study RL run of
``verify.experiments.cases``), so gains are compared at equal steps, as in the paper's table; per seed the runs
share their first samples (paired by seed).
"""

from __future__ import annotations

import numpy as np

from verify.controls.numbers import planted_masked_gains
from verify.experiments.cases import MASK_KINDS, masked as masked_runs, masked_seeds
from verify.figures import cases as fig
from verify.measures.training import frozen_changes, gain_curve, kl_curve, kl_distance, mask_share
from verify.registry import INCONCLUSIVE, Measurement, claim, negative, positive, report_section
from verify.report import est_text, figure_lines
from verify.rules import AtLeast, Interval, Outcome, Within, all_of

PAPER_320 = {"dense": 57.44, "principal": 53.82, "non_principal": 55.40, "low_magnitude": 56.69, "safe": 56.24,
             "random": 55.34}  # the paper's score after 320 steps (mean of MATH500, AMC23, AIME24, AIME25)
PRINCIPAL_COST = AtLeast("dense - principal final gain, per seed", 0.02, "a priori")
TRACKS = Within("dense - safe final gain, per seed ('tracks dense')", 0.02, "a priori")
BEYOND_DENSITY = AtLeast("safe - random (equal density) final gain, per seed", 0.01, "a priori")
PLANTED_SEED = 61


def _diff(a, b) -> Interval:
    return Interval.of(np.asarray(a, float) - np.asarray(b, float))


def decide_masked(dense, principal, safe, random, frozen_changed: int = 0) -> tuple[str, dict[str, Outcome]]:
    """C14 rule on per-seed final gains at equal steps, paired by seed: dense - principal above 0.02
    (``PRINCIPAL_COST``), dense - safe within +-0.02 by two one-sided tests (``TRACKS``) and safe - random above
    0.01 (``BEYOND_DENSITY``); the claim is ``all_of`` the three. Whatever the gains, INCONCLUSIVE when a masked
    coordinate changed (``frozen_changed`` > 0: a mask did not hold)."""
    out = {"dense - principal": PRINCIPAL_COST.decide(_diff(dense, principal)),
           "dense - safe": TRACKS.decide(_diff(dense, safe)),
           "safe - random": BEYOND_DENSITY.decide(_diff(safe, random))}
    return (INCONCLUSIVE if frozen_changed else all_of(*out.values())), out


@claim("masked.rl", paper=("C14",), title="masked RL: principal-only gains least; the safe mask tracks dense RL",
       paper_number="DS-Qwen-1.5B, 320 steps: dense 57.44, principal 53.82, non-principal 55.40, low-magnitude 56.69, "
                    "safe 56.24, random 55.34; safe's KL curve follows dense, principal's rises slowest",
       rule=f"fixed-length RL under each mask, >= 3 seeds (quick: 5), paired by seed: {PRINCIPAL_COST.text}; {TRACKS.text}; "
            f"{BEYOND_DENSITY.text} (the random mask has the safe mask's count in every matrix); all three -> "
            "REPRODUCED; any NOT REPRODUCED -> NOT REPRODUCED; a masked coordinate that changed -> INCONCLUSIVE",
       runs=masked_runs)
def masked(ctx, runs) -> Measurement:
    """masked.rl (C14): final gains and KL-to-base curves of RL under fixed masks, against dense RL."""
    p = ctx.profile
    seeds = masked_seeds(p)
    gains = {k: [r.summary["gain"] for r in v] for k, v in runs.items()}
    kl = {k: [kl_curve(r)[1] for r in v] for k, v in runs.items()}
    dist = {k: [kl_distance(a, b) for a, b in zip(kl[k], kl["dense"])] for k in MASK_KINDS if k != "dense"}
    frozen = {k: [frozen_changes(r) for r in v] for k, v in runs.items() if k != "dense"}
    leaked = sum(b for v in frozen.values() for b, _ in v)
    status, outcomes = decide_masked(gains["dense"], gains["principal"], gains["safe"], gains["random"], leaked)
    pos, _ = decide_masked(*planted_masked_gains(PLANTED_SEED, max(3, len(seeds))))
    neg = TRACKS.decide(_diff(gains["dense"], gains["random"]))  # the random mask of equal density in the safe role
    descriptive = {f"dense - {k} (tracks dense?)": TRACKS.decide(_diff(gains["dense"], gains[k]))
                   for k in ("non_principal", "low_magnitude", "random")}
    densities = {k: mask_share(runs[k][0]) for k in MASK_KINDS if k != "dense"}
    auc = {k: [float(np.mean(gain_curve(r)[1][1:])) for r in v] for k, v in runs.items()}
    g = {k: Interval.of(v) for k, v in gains.items()}
    gain_curves = {k: (gain_curve(v[0])[0], np.mean([gain_curve(r)[1] for r in v], axis=0)) for k, v in runs.items()}
    kl_curves = {k: (kl_curve(runs[k][0])[0], np.mean(kl[k], axis=0)) for k in runs}
    return Measurement(
        status,
        "final gain " + ", ".join(f"{k} {g[k].text('+.3f')}" for k in MASK_KINDS)
        + "; " + ", ".join(f"{k} {o.interval.text('+.3f')}" for k, o in outcomes.items())
        + f"; dense - random {neg.interval.text('+.3f')} ({neg.status} as 'tracks dense'); frozen coordinates changed: {leaked}",
        numbers={"final_gain": g, **{k.replace(" - ", "_minus_"): o.interval for k, o in outcomes.items()},
                 "dense_minus_random": neg.interval,
                 "mean_gain_over_curve": {k: Interval.of(v) for k, v in auc.items()},
                 "kl_distance_to_dense": {k: Interval.of(v) for k, v in dist.items()},
                 "final_kl_to_base": {k: Interval.of([c[-1] for c in v]) for k, v in kl.items()},
                 "mask_density_block_matrices": densities,
                 "frozen_coordinates_changed": leaked,
                 "frozen_coordinates": int(sum(n for v in frozen.values() for _, n in v)),
                 "paper_score_320_steps": PAPER_320},
        controls=[positive("planted gains: principal 0.05 below dense, safe equal to dense, random 0.04 below safe", pos),
                  negative("the random mask of the safe mask's density in the safe role, through 'tracks dense'",
                           neg.status)],
        outcomes=outcomes, descriptive=descriptive,
        figures=[fig.outcome_intervals(outcomes | {"dense - random (-)": neg}, "final gain difference (fraction)",
                                       f"C14: masked RL, paired by seed ({len(seeds)} seeds)"),
                 fig.masked_runs(MASK_KINDS, gain_curves, kl_curves, g, len(seeds), p.cases.rl_steps)],
        runs={k: list(v) for k, v in runs.items()},
        notes=[f"{p.cases.rl_steps} steps per run (fixed, no matched stop), seeds {list(seeds)}, grpo_kl, fp32 master; "
               f"held-out accuracy every {p.cases.curve_every} steps on {p.eval_problems} problems; gains paired by seed "
               "(same first samples).",
               "Mask shares of the block matrices: " + ", ".join(f"{k} {v:.3f}" for k, v in densities.items())
               + " (paper: 50, 50, 58.6, 74.0, 74.0 %); embeddings, unembedding, norms and biases stay trainable.",
               "Negative control: if a random mask of the safe mask's density also tracks dense, tracking is explained "
               "by density, not by which weights the safe mask keeps.",
               "Every masked run was checked bit for bit: float32 master weights of masked coordinates equal the base's "
               f"({leaked} changed of {sum(n for v in frozen.values() for _, n in v)}).",
               "KL distance (reported, not decided) = sum over steps |KL_mask - KL_dense| / sum KL_dense, per seed "
               "against the dense run of the same seed."],
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
             f"Verdict {v.cell}: {v.headline}.", "",
             "| mask | paper: score after 320 steps (%) | ours: final gain at equal steps | ours: KL-curve distance to dense |",
             "|---|---|---|---|"]
    for k in MASK_KINDS:
        lines.append(f"| {k} | {PAPER_320[k]:.2f} | {est_text(gain.get(k))} | {est_text(dist.get(k), '.2f') if k != 'dense' else '0'} |")
    return "\n".join(lines + [""] + figure_lines(v))
