"""Gate I claims: each on-policy step is a small KL-bounded move (Prop 3.1, clip-only bound), the exact step KL
matches its Fisher quadratic form (Prop 3.2, second order), RL stays near the base at equal gain, and the
per-layer weight leash |dW|_F <= sqrt(2 delta_W / mu_W) with the Schur complement.

Step quantities come from each run's metrics.jsonl (``verify.measures.kl_steps``); the dense Fisher of the
weight leash from ``verify.measures.curvature``.
"""

from __future__ import annotations

import math

import numpy as np

from verify.comparison import compare, size_note
from verify.controls.policies import SYNTH_SEEDS, synthetic_clip, synthetic_fisher_ratio, synthetic_leash, synthetic_psd_leash
from verify.experiments.compared import compared
from verify.experiments.matched import dapo, large_step, matched
from verify.figures import gates as fig
from verify.figures.common import comparison_dots
from verify.measures.curvature import FISHER_PROBE, unembedding_leash
from verify.measures.kl_steps import STEP_KL, bound_ratio, bound_share, fisher_ratio, series, share_within
from verify.measures.training import kl_curve
from verify.registry import FAIL, PASS, Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval, check
from verify.stats import over_seeds

WITHIN_SHARE = 0.95  # a leash holds when at least this share of steps is within the bound, in every seed
FISHER_BAND = (0.8, 1.25)  # exact KL / (1/2 D^T F D): second order holds inside this band, in every seed
CONTROL_SEEDS = tuple(range(5))  # seeds of the run-based positive control of gate1.kl_to_base (5 whatever the profile)
VACUOUS = 0.01  # a bound more than 100x the measured norm says nothing about this update: the qualifier "vacuous"
KL_FARTHER = AtLeast("log2(KL_comparator / KL_RL) to the base", 1.0,
                     "a priori: a factor 2 in exact KL to the base on the probe")


def decide_leash(shares) -> str:
    """Check: at least WITHIN_SHARE of the steps within the bound in every seed -> PASS; else FAIL (a seed without
    steps, NaN, fails)."""
    shares = np.asarray(shares, np.float64)
    return PASS if shares.size and np.all(shares >= WITHIN_SHARE) else FAIL


def _step_bound(rl, large, bound_key: str, planted_within, planted_broken, title: str) -> dict:
    """What gate1.leash and gate1.clip_only share: per seed the share of steps whose exact step KL is within the
    per-step bound ``bound_key`` and the median ratio (the bound's looseness), the same share of the large-step run,
    the rule on both planted step sets (each a list of (KL, bound) per synthetic seed) and the figure."""
    shares = [bound_share(r, bound_key) for r in rl]
    status = decide_leash(shares)
    return {"status": status, "shares": over_seeds(shares),
            "outcome": check(f"share of steps within the bound, smallest seed (>= {WITHIN_SHARE})", status == PASS,
                             min(shares, default=float("nan"))),
            "ratio": over_seeds([bound_ratio(r, bound_key) for r in rl]), "large": bound_share(large, bound_key),
            "pos": decide_leash([share_within(*x) for x in planted_within]),
            "neg": decide_leash([share_within(*x) for x in planted_broken]),
            "figure": fig.step_kl_against_bound([(f"seed {r.spec.train.seed}", series(r, bound_key), series(r, STEP_KL))
                                                 for r in rl], title)}


@claim("gate1.leash", paper=("C7",), title="each RL step's exact KL stays under the Prop 3.1 leash",
       paper_number="KL(pi+ || pi) <= (1 + o(1)) KL(q_tilde || pi) (theory, no measurement)",
       rule=f"check: share of steps with exact step KL <= KL(q_tilde || pi_t) >= {WITHIN_SHARE} in every seed -> PASS; "
            "else FAIL; the bound's looseness (median step KL / bound) in the headline",
       runs=lambda p: {"rl": matched(p).rl, "large_step": large_step(p, p.seeds[:1])}, kind="check")
def leash(ctx, runs) -> Measurement:
    """gate1.leash (C7, Prop 3.1): exact step KL against KL(q_tilde || pi_t) for grpo_kl runs."""
    p = ctx.profile
    b = _step_bound(runs["rl"], runs["large_step"][0], "kl/tilted_bound_seq",
                    [synthetic_leash(s, "tilt") for s in SYNTH_SEEDS], [synthetic_leash(s, "large") for s in SYNTH_SEEDS],
                    "Prop 3.1: exact step KL vs KL(q_tilde || pi_t), grpo_kl")
    return Measurement(
        b["status"], f"steps within the Prop 3.1 bound {b['shares'].text('.3f')}; looseness: median step KL / bound "
                     f"{b['ratio'].text('.2g')}",
        numbers={"share_within": b["shares"], "median_ratio": b["ratio"], f"share_within_at_lr_{p.control_lr:g}": b["large"]},
        controls=[positive("synthetic partial tilt steps", b["pos"]), negative("synthetic large logit steps", b["neg"])],
        outcomes={"steps within the bound": b["outcome"]},
        figures=[b["figure"]], runs={"rl": list(runs["rl"]), "rl at the control rate": list(runs["large_step"])},
        notes=["The bound is computed per prompt from the group's pass rate (the tilt depends on y only through R)."
               " The step KL is the chain-rule sum along prefixes sampled from pi_t (a second-order-accurate stand-in"
               " for prefixes from pi_t+1).",
               f"A run at lr {p.control_lr:g} for {p.control_steps} steps kept {b['large']:.2f} of its steps within the bound."],
    )


def decide_fisher(median_ratios) -> str:
    """Check: median exact-KL / Fisher-quadratic ratio inside FISHER_BAND in every seed -> PASS; else FAIL."""
    m = np.asarray(median_ratios, np.float64)
    return PASS if m.size and np.all((m >= FISHER_BAND[0]) & (m <= FISHER_BAND[1])) else FAIL


@claim("gate1.fisher", paper=("C7",), title="the exact step KL equals 1/2 D^T F D to second order",
       paper_number="KL(pi_theta+D || pi_theta) = 1/2 D^T F D + O(|D|^3)",
       rule=f"check: median per-step ratio exact KL / (1/2 D^T F D) of the RL runs within {FISHER_BAND} in every seed "
            "-> PASS; else FAIL",
       runs=lambda p: {"matched": matched(p), "large_step": large_step(p, p.seeds[:1])}, kind="check")
def fisher(ctx, runs) -> Measurement:
    """gate1.fisher (Prop 3.2, second order): exact step KL against 1/2 D^T F D of the same step."""
    p, m = ctx.profile, runs["matched"]
    rl_med, sft_med = [fisher_ratio(r) for r in m.rl], [fisher_ratio(r) for r in m.sft]
    ctrl_med = fisher_ratio(runs["large_step"][0])
    status = decide_fisher(rl_med)
    pos = decide_fisher([synthetic_fisher_ratio(s, 1e-3) for s in SYNTH_SEEDS])
    neg = decide_fisher([synthetic_fisher_ratio(s, 8.0) for s in SYNTH_SEEDS])
    worst = max(rl_med, key=lambda r: abs(math.log(r)) if r > 0 else math.inf, default=float("nan"))
    figure = fig.step_kl_against_fisher([(r.spec.train.method, s, series(r, "kl/fisher_quad_seq"), series(r, STEP_KL))
                                         for rs in (m.rl, m.sft) for s, r in zip(m.seeds, rs)])
    return Measurement(
        status,
        f"median exact KL / (1/2 D^T F D): RL {over_seeds(rl_med).text('.3f')}, SFT {over_seeds(sft_med).text('.3f')}",
        numbers={"rl_median_ratio": over_seeds(rl_med), "sft_median_ratio": over_seeds(sft_med),
                 f"median_ratio_at_lr_{p.control_lr:g}": ctrl_med},
        controls=[positive("synthetic logit steps of size 1e-3", pos), negative("synthetic logit steps of size 8", neg)],
        outcomes={"second order": check(f"median ratio of the seed farthest from 1 (inside {FISHER_BAND})",
                                        status == PASS, worst)},
        figures=[figure], runs={"rl": list(m.rl), "sft": list(m.sft)},
        notes=[f"A run at lr {p.control_lr:g} for {p.control_steps} steps had median ratio {ctrl_med:.3f}."],
    )


@claim("gate1.clip_only", paper=("C7",), title="with clipping only (beta = 0) the per-step KL stays bounded",
       paper_number="per-step KL <= E[T] max(-log(1-eps), log(1+eps)) (heuristic bound)",
       rule=f"check: share of dapo_clip steps with exact step KL <= E[T] max(-log(1-eps), log(1+eps_high)) >= "
            f"{WITHIN_SHARE} in every seed -> PASS; else FAIL; the bound's looseness in the headline",
       runs=lambda p: {"rl": dapo(p), "large_step": large_step(p, p.seeds[:1], "dapo_clip")}, kind="check")
def clip_only(ctx, runs) -> Measurement:
    """gate1.clip_only (C7, beta = 0): dapo_clip step KL against E[T] max(-log(1-eps), log(1+eps_high))."""
    p, rl = ctx.profile, runs["rl"]
    b = _step_bound(rl, runs["large_step"][0], "kl/clip_bound_seq",
                    [synthetic_clip(s, 0.2, True) for s in SYNTH_SEEDS], [synthetic_clip(s, 0.2, False) for s in SYNTH_SEEDS],
                    "Clip-only leash (beta = 0, dapo_clip)")
    return Measurement(
        b["status"], f"steps within the clip-only bound {b['shares'].text('.3f')}; looseness: median step KL / bound "
                     f"{b['ratio'].text('.2g')}",
        numbers={"share_within": b["shares"], "median_ratio": b["ratio"], f"share_within_at_lr_{p.control_lr:g}": b["large"],
                 "gain": over_seeds([r.summary["gain"] for r in rl])},
        controls=[positive("synthetic steps with clipped log-ratios", b["pos"]), negative("synthetic unclipped steps", b["neg"])],
        outcomes={"steps within the bound": b["outcome"]},
        figures=[b["figure"]], runs={"rl (dapo_clip)": list(rl), "rl at the control rate": list(runs["large_step"])},
        notes=[f"A dapo_clip run at lr {p.control_lr:g} kept {b['large']:.2f} of its steps within the bound.",
               "dapo_clip runs stop at the same target gain as grpo_kl: " +
               ", ".join(f"seed {r.spec.train.seed}: {r.summary['stopped_at']} steps ({r.summary['reason']})" for r in rl)],
    )


def kl_to_base(run) -> float:
    """The exact KL(pi || base) on the probe at the run's final snapshot (for a run read at equal size: the KL logged
    at that step). A missing, non-finite or non-positive KL is refused naming the run: no seed is dropped silently."""
    kl = run.summary.get("kl_to_base_final")
    if kl is None or not math.isfinite(kl) or kl <= 0:
        raise ValueError(f"Run {run.directory.name} has kl_to_base_final = {kl!r}; gate1.kl_to_base needs a positive "
                         "exact KL to the base for every seed.")
    return float(kl)


def kl_log_ratio(rl, comparator) -> float:
    """log2(KL_comparator / KL_RL): the per-seed statistic of gate1.kl_to_base (> 0: the comparator is farther)."""
    return math.log2(kl_to_base(comparator) / kl_to_base(rl))


def decide_kl(log_ratios):
    """gate1.kl_to_base's rule on per-seed log2(KL_comparator / KL_RL): the 95 % interval wholly above 1 (the comparator
    at least twice as far from the base) -> REPRODUCED; wholly below 1 -> NOT REPRODUCED; else INCONCLUSIVE."""
    return KL_FARTHER.decide(Interval.of(log_ratios))


@claim("gate1.kl_to_base", paper=("C7", "C10"), title="RL stays closer to the base than SFT",
       paper_number="SFT drifts far from the base (no numbers)",
       rule=f"{KL_FARTHER.text}, per seed, the comparator being SFT at the RL rate read at the RL run's ||dW|| / ||W|| "
            "(decisive; SFT at its customary rate and matched gain reported beside it)",
       runs=lambda p: {"compared": compared(p), "far": large_step(p, CONTROL_SEEDS), "near": matched(p, CONTROL_SEEDS).rl})
def kl_to_base_claim(ctx, runs) -> Measurement:
    """gate1.kl_to_base (C7, C10): exact KL(pi || base) on the probe, SFT against RL at equal update size; RL at the
    large control rate against matched RL (positive), the next seed's RL and RL at the SFT rate (placebo) as controls."""
    c, far, near = runs["compared"], runs["far"], runs["near"]
    cmp = compare(ctx, c, kl_log_ratio, KL_FARTHER, by="relative_update_norm")
    pos_values = [kl_log_ratio(n, f) for n, f in zip(near, far)]
    pos = decide_kl(pos_values)
    kl = lambda rs: over_seeds([kl_to_base(r) for r in rs])  # noqa: E731
    curves = {name: [(s[s > 0], k[s > 0]) for s, k in map(kl_curve, rs)] for name, rs in (("RL (grpo_kl)", c.rl), ("SFT", c.sft))}
    dots = comparison_dots({"KL": cmp.values}, KL_FARTHER.floor, "log2(KL_comparator / KL_RL) per seed",
                           "gate1.kl_to_base: exact KL to the base, comparator against RL",
                           extra={f"+ RL at lr {ctx.profile.control_lr:g}": pos_values})
    return Measurement(
        cmp.decisive.status,
        f"log2(KL_SFT / KL_RL) at equal ||dW||/||W|| {cmp.decisive.interval.text('+.2f')} (KL: RL {kl(c.rl).text('.3g')}, "
        f"SFT there {kl(cmp.equal_size).text('.3g')} nats/token); at SFT's customary rate "
        f"{cmp.outcomes['customary'].interval.text('+.2f')} (SFT {kl(c.sft).text('.3g')}); placebo "
        f"{cmp.outcomes['placebo'].interval.text('+.2f')}",
        numbers={"rl_kl": kl(c.rl), "sft_equal_size_kl": kl(cmp.equal_size), "sft_kl": kl(c.sft),
                 "placebo_kl": kl(c.placebo), **{f"log2_ratio_{k.replace(' ', '_')}": over_seeds(v) for k, v in cmp.values.items()},
                 "positive_control_log2_ratio": over_seeds(pos_values),
                 "rl_gain": over_seeds([r.summary["gain"] for r in c.rl]), "sft_gain": over_seeds([r.summary["gain"] for r in c.sft])},
        controls=[positive(f"RL at lr {ctx.profile.control_lr:g} against matched RL ({len(CONTROL_SEEDS)} seeds)", pos.status),
                  *cmp.controls()],
        outcomes={"SFT against RL at equal ||dW||/||W||": cmp.decisive}, descriptive=cmp.descriptive(),
        figures=[dots, fig.kl_to_base_curves(curves)],
        runs={**cmp.runs, "rl at the control rate": list(far), "rl, positive-control seeds": list(near)},
        notes=[size_note(ctx, cmp, "relative_update_norm"),
               "The KL of a run read at equal size is the exact KL to the base logged at that step "
               "(kl/to_base_exact); the KL of a finished run is kl_to_base_final.",
               "Stops: RL " + ", ".join(f"{r.summary['stopped_at']} ({r.summary['reason']})" for r in c.rl) +
               "; SFT " + ", ".join(f"{r.summary['stopped_at']} ({r.summary['reason']})" for r in c.sft)],
    )


def decide_weight_leash(holds) -> str:
    """Check: |dW|_F <= sqrt(2 delta_W / mu_W) (mu on the range of S_W) in every seed -> PASS; violated in any -> FAIL."""
    holds = np.asarray(holds, bool)
    return PASS if holds.size and holds.all() else FAIL


def vacuous(ratios) -> bool:
    """True when in some seed the bound exceeds the measured norm more than 1 / VACUOUS times (|dW|_F / bound <
    VACUOUS): the bound holds but says nothing about that update."""
    return bool(np.any(np.asarray(ratios, np.float64) < VACUOUS))


@claim("gate1.weight_leash", paper=("C7",), title="per-layer weight leash |dW|_F <= sqrt(2 delta_W / mu_W)",
       paper_number="Prop 3.2 with the Schur complement (theory)",
       rule=f"check: the bound holds in every seed -> PASS; violated in any -> FAIL; qualifier 'vacuous' when in some "
            f"seed |dW|_F / bound < {VACUOUS} (a bound more than {1 / VACUOUS:.0f}x the norm)",
       runs=lambda p: matched(p, p.seeds[:2]).rl, kind="check")
def weight_leash(ctx, runs) -> Measurement:
    """gate1.weight_leash (Prop 3.2, per layer): |dW|_F against sqrt(2 delta_W / mu_W) for the unembedding,
    with the Schur complement of a dense Fisher over (unembedding, final layer norm)."""
    rows = [unembedding_leash(ctx, r) for r in runs]
    holds = [r["norm"] <= r["bound"] * (1 + 1e-6) for r in rows]
    ratios = [r["norm"] / r["bound"] for r in rows]
    status = decide_weight_leash(holds)
    # controls on a synthetic PSD matrix: a direction in its range meets the bound; mu -> lambda_max breaks it
    norm, b_pos, b_neg = synthetic_psd_leash()
    col = lambda key: [r[key] for r in rows]  # noqa: E731
    return Measurement(
        status,
        "|dW|_F / bound " + ", ".join(f"{x:.3g}" for x in ratios) +
        "; share of dW in the null space of S_W " + ", ".join(f"{r['null_share']:.3f}" for r in rows),
        numbers={"ratio": over_seeds(ratios), "mu_W": over_seeds(col("mu")),
                 "delta_W": over_seeds(col("delta")), "null_space_share": over_seeds(col("null_share"))},
        controls=[positive("synthetic PSD Fisher, direction in its range", decide_weight_leash([norm <= b_pos])),
                  negative("same with mu = lambda_max", decide_weight_leash([norm <= b_neg]))],
        outcomes={"bound holds": check("|dW|_F / bound, largest seed (<= 1)", status == PASS, max(ratios, default=float("nan")))},
        qualifiers=("vacuous",) if status == PASS and vacuous(ratios) else (),
        figures=[fig.weight_leash_bars([r.spec.train.seed for r in runs], col("norm"), col("bound"))], runs={"rl": list(runs)},
        notes=[f"Dense Fisher restricted to the unembedding and the final layer norm (others fixed at the base), "
               f"token mean over the completion positions of the first {FISHER_PROBE} probe sequences (a dense Fisher over "
               "a whole block does not fit in memory for the small model); S_W = Schur complement of the unembedding block; "
               "mu_W = smallest eigenvalue above 1e-6 lambda_max (the range: softmax shift invariance makes S_W singular).",
               "The bound needs dW in the range of S_W; the null-space share says how much of the real update is not.",
               f"'vacuous' ({VACUOUS}) was fixed after a first tiny-profile run showed mu_W near 1e-6 lambda_max; it "
               "qualifies a PASS, it never turns it into a FAIL."],
    )
