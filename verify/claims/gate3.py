"""Gate III claims: bf16 sparsity of RL against SFT, its disappearance with fp32 storage and large
learning rates, the soundness of the probes, and predicted against measured visibility of updates."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from verify.comparison import compare, size_note
from verify.controls.updates import hand_made_probe_mismatches, planted_disagreement, planted_sparsity, sub_ulp_share
from verify.experiments.compared import Compared, compared
from verify.experiments.matched import Matched, bf16_every_step, lr_sweep, matched
from verify.figures import gates as fig
from verify.measures.sparsity import (
    bf16_sparsity,
    eligible_sparsity,
    fp32_sparsity,
    probe_counts,
    untouched_share,
    visibility_agreement,
)
from verify.registry import FAIL, PASS, Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval, all_of
from verify.stats import over_seeds

VISIBLE_AGREEMENT = 0.99  # the half-ULP rule must predict the changed export for at least this share of weights
RL_SPARSE = AtLeast("RL bf16 sparsity", 0.36, "paper: lowest published RL sparsity, C1")
RL_ABOVE = AtLeast("RL - comparator bf16 sparsity", 0.17, "paper: lowest RL sparsity 0.36 minus highest SFT 0.188")


def decide_sparsity(rl_values, rl_minus_comparator) -> tuple[str, object, object]:
    """C1 rule on per-seed numbers: RL sparse (95 % interval of RL sparsity wholly above 0.36) and sparser than its
    comparator (interval of the per-seed difference wholly above 0.17); either wholly below -> NOT REPRODUCED.
    Returns (status, RL outcome, difference outcome)."""
    a, b = RL_SPARSE.decide(Interval.of(rl_values)), RL_ABOVE.decide(Interval.of(rl_minus_comparator))
    return all_of(a, b), a, b


def sparsity_difference(rl, comparator) -> float:
    """bf16 sparsity of ``rl`` minus that of ``comparator`` (a finished run or a run read at a snapshot)."""
    return bf16_sparsity(rl) - bf16_sparsity(comparator)


@claim("gate3.sparsity", paper=("C1", "C6"), title="bf16 update sparsity: RL sparse, and sparser than SFT",
       paper_number="RL 36-92 %, SFT 0.6-18.8 %",
       rule=f"{RL_SPARSE.text}; and {RL_ABOVE.text}, the comparator being SFT at the RL rate read at the RL run's drift "
            "ratio (decisive; SFT at its customary rate reported beside it)", runs=compared)
def sparsity(ctx, runs: Compared) -> Measurement:
    """gate3.sparsity (C1): bf16-export sparsity of matched RL, and RL against SFT at equal drift ratio; fp32 storage,
    the next seed's RL and RL at the SFT rate (placebo) as controls."""
    rl_b = [bf16_sparsity(r) for r in runs.rl]
    cmp = compare(ctx, runs, sparsity_difference, RL_ABOVE, by="drift_ratio")
    rl_out = RL_SPARSE.decide(Interval.of(rl_b))
    status = all_of(rl_out, cmp.decisive)
    rl_f, sft_f = [fp32_sparsity(r) for r in runs.rl], [fp32_sparsity(r) for r in runs.sft]
    fp32_status = RL_SPARSE.decide(Interval.of(rl_f)).status  # fp32 bits: no precision readout by construction
    pos, _, _ = decide_sparsity([planted_sparsity(s, True) for s in range(3)],
                                [planted_sparsity(s, True) - planted_sparsity(s, False) for s in range(3)])
    sft_b = [bf16_sparsity(r) for r in runs.sft]
    eq_b = [bf16_sparsity(v) for v in cmp.equal_size]
    rl_el, sft_el = over_seeds([eligible_sparsity(r) for r in runs.rl]), over_seeds([eligible_sparsity(r) for r in runs.sft])
    untouched = over_seeds([untouched_share(r) for r in runs.rl])
    return Measurement(
        status, f"RL {Interval.of(rl_b).text('.2f')}; RL - SFT at equal drift {cmp.decisive.interval.text('+.2f')} "
                f"(SFT there {Interval.of(eq_b).text('.2f')}); at SFT's customary rate RL - SFT "
                f"{cmp.outcomes['customary'].interval.text('+.2f')} (SFT {Interval.of(sft_b).text('.2f')}); placebo "
                f"RL - RL at the SFT rate {cmp.outcomes['placebo'].interval.text('+.2f')}",
        numbers={"rl_sparsity": over_seeds(rl_b), "sft_sparsity": over_seeds(sft_b), "sft_equal_size_sparsity": over_seeds(eq_b),
                 "placebo_sparsity": over_seeds([bf16_sparsity(r) for r in runs.placebo]),
                 "rl_sparsity_eligible": rl_el, "sft_sparsity_eligible": sft_el, "untouched_share": untouched,
                 "rl_sparsity_fp32": over_seeds(rl_f), "sft_sparsity_fp32": over_seeds(sft_f)},
        controls=[positive("planted sub-ULP against large updates", pos),
                  negative("fp32 storage (master weights, float32 bits) through the RL-sparsity rule", fp32_status),
                  *cmp.controls()],
        outcomes={"RL sparsity": rl_out, "RL - SFT at equal drift ratio": cmp.decisive},
        descriptive=cmp.descriptive(),
        figures=[fig.sparsity_bars(runs.seeds, rl_b, sft_b, rl_f, sft_f)], runs=cmp.runs,
        notes=[size_note(ctx, cmp, "drift_ratio"),
               f"{100 * untouched.mean:.1f} % of the parameters never received a gradient (unused embedding and "
               "position rows); they count as unchanged in the sparsity and are left out of the 'eligible' numbers "
               f"(RL {rl_el.text('.2f')}, SFT {sft_el.text('.2f')})."],
    )


def decide_sweep(lrs, sparsity_by_lr) -> tuple[str, float]:
    """Check: sparsity falls with learning rate (Spearman rho <= -0.8 over (lr, seed-mean sparsity)), the smallest
    lr keeps >= 0.5 unchanged and the largest < 0.1 -> PASS; else FAIL. Rounding arithmetic: a bigger step crosses
    more half-ULPs, so this checks the instrument, not the paper."""
    means = [float(np.mean(v)) for v in sparsity_by_lr]
    rho = float(sps.spearmanr(lrs, means).statistic) if len(set(means)) > 1 else 0.0
    return (PASS if rho <= -0.8 and means[0] >= 0.5 and means[-1] < 0.1 else FAIL), rho


@claim("gate3.lr_sweep", paper=("C6",), title="sparsity disappears as the learning rate grows",
       paper_number="no numbers (qualitative)",
       rule="check: Spearman rho(lr, sparsity) <= -0.8, sparsity >= 0.5 at the smallest lr and < 0.1 at the largest",
       runs=lr_sweep, kind="check")
def sweep(ctx, runs) -> Measurement:
    """gate3.lr_sweep (C6): RL sparsity across learning rates at a fixed step count; fp32 storage as control."""
    p = ctx.profile
    lrs = list(runs)
    bf = [[bf16_sparsity(r) for r in runs[lr]] for lr in lrs]
    fp = [[fp32_sparsity(r) for r in runs[lr]] for lr in lrs]
    status, rho = decide_sweep(lrs, bf)
    neg, neg_rho = decide_sweep(lrs, fp)
    pos, _ = decide_sweep(lrs, [[sub_ulp_share(lr) for _ in runs[lr]] for lr in lrs])
    return Measurement(
        status,
        "sparsity " + ", ".join(f"{lr:g}: {np.mean(v):.2f}" for lr, v in zip(lrs, bf)) + f" (rho {rho:.2f}); "
        "fp32 storage " + ", ".join(f"{np.mean(v):.2f}" for v in fp),
        numbers={f"sparsity@{lr:g}": over_seeds(v) for lr, v in zip(lrs, bf)}
        | {f"fp32_sparsity@{lr:g}": over_seeds(v) for lr, v in zip(lrs, fp)}
        | {"spearman_rho": rho, "fp32_spearman_rho": neg_rho},
        controls=[negative("fp32 storage (master weights, float32 bits)", neg),
                  positive("planted Adam-like steps of size lr", pos)],
        figures=[fig.sparsity_against_lr(lrs, [np.mean(v) for v in bf], [np.mean(v) for v in fp], p.sweep_steps)],
        runs=[r for v in runs.values() for r in v],
        notes=["The negative control compares the fp32 master weights bit for bit (float32), so only parameters that "
               "never received an update count as unchanged; it must not show the precision readout."],
    )


def decide_probe(counts) -> str:
    """Check: the relative probe equals bitwise truth on every weight (0 mismatches) -> PASS; else FAIL."""
    return PASS if counts["relative_mismatch"] == 0 else FAIL


@claim("gate3.probes", paper=("C2",), title="the 1e-3 relative probe equals bitwise equality; 1e-5 absolute probe errs",
       paper_number="eta < 2^-9 equals bitwise; absolute probe wrong for large and tiny weights",
       rule="check: 0 mismatches between the eta=1e-3 probe and bitwise bf16 equality", runs=matched, kind="check")
def probes(ctx, runs: Matched) -> Measurement:
    """gate3.probes (C2): the eta=1e-3 relative probe against bitwise bf16 truth; absolute-probe errors."""
    all_runs = list(runs.rl) + list(runs.sft)
    c = probe_counts(all_runs, 1e-3)
    neg = decide_probe(probe_counts(all_runs[:1], 2.0**-7))
    pos = decide_probe({"relative_mismatch": hand_made_probe_mismatches()})
    return Measurement(
        decide_probe(c),
        f"relative probe mismatches {c['relative_mismatch']}/{c['n']}; absolute probe false changed "
        f"{c['absolute_false_changed']}, false equal {c['absolute_false_equal']}",
        numbers={k: float(v) for k, v in c.items()},
        controls=[negative("eta = 2^-7 (too loose)", neg), positive("hand-made pairs", pos)],
        figures=[fig.probe_errors(c)], runs=all_runs,
        notes=["Absolute probe read on the fp32 master weights (what a float32 checkpoint diff sees), truth on the bf16 export."],
    )


def decide_visibility(agreement: float) -> str:
    """Check: the half-ULP rule predicts which exported weights changed for at least 99 % of weights -> PASS."""
    return PASS if agreement >= VISIBLE_AGREEMENT else FAIL


@claim("gate3.visibility", paper=("C9", "C6"), title="a stored weight changes iff |dw| >= ULP/2",
       paper_number="smallest visible relative change 0.195-0.391 %",
       rule="check: the half-ULP rule predicts the changed export for >= 99 % of weights",
       runs=lambda p: {"master": matched(p).rl, "every_step": bf16_every_step(p)}, kind="check")
def visibility(ctx, runs) -> Measurement:
    """gate3.visibility (C9): half-ULP rule against measured export changes; the two storage regimes."""
    master, every = runs["master"], runs["every_step"]
    per_seed = [visibility_agreement([r]) for r in master]
    agreement = over_seeds([a for a, _ in per_seed])
    status = decide_visibility(agreement.mean)
    neg = decide_visibility(visibility_agreement(master[:1], ulp_scale=4.0)[0])
    pos = decide_visibility(1.0 - planted_disagreement())
    master_sp, every_sp = [bf16_sparsity(r) for r in master], [bf16_sparsity(r) for r in every]
    figure = fig.labelled_seed_bars(ctx.profile.seeds, master_sp, every_sp, ("fp32 master + bf16 export", "bf16 every step"),
                                    "update sparsity (share unchanged)", "C9: the two storage regimes (RL, matched gain)", (0, 1))
    return Measurement(
        status,
        f"half-ULP rule agrees on {agreement.text('.4f')} of weights; sparsity fp32-master {np.mean(master_sp):.2f}"
        f" vs bf16-every-step {np.mean(every_sp):.2f}",
        numbers={"agreement": agreement, "sparsity_fp32_master": over_seeds(master_sp),
                 "sparsity_bf16_every_step": over_seeds(every_sp),
                 "predicted_visible_exact": over_seeds([v for _, v in per_seed])},
        controls=[negative("ULP of 4|w| (wrong threshold)", neg), positive("synthetic updates", pos)],
        figures=[figure], runs=list(master) + list(every),
        notes=["bf16-every-step runs keep optimizer state in fp32 and round parameters after every update."],
    )
