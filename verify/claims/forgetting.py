"""Forgetting (C18: the authors' summary says the theory also explains why RL forgets less than SFT; RL's Razor, 2025:
forgetting is predicted by the KL to the base on the new task, not by the weight change's norm or sparsity). Read on
the single-task experiment (``verify.experiments.single_task``): every method fine-tuned on one task from the
profile's base and stopped at the matched gain; forgetting is the mean drop of the held-out pass rates of the base's
other tasks (``verify.measures.forgetting``).

- ``forgetting.rl_vs_sft``: SFT forgets more than RL by at least 0.02 of pass rate, at matched gain (decisive there:
  forgetting is the price of learning the task; docs/science.md section 6), with the step-size placebo (RL at the SFT
  rate in SFT's role), RL of the next seed as the negative control and planted forgetting as the positive one.
- ``forgetting.predictor``: over every matched run, the Spearman correlation of forgetting with KL to the base on the
  trained task exceeds its correlation with ||dW|| / ||W||, the bf16 changed share and the drift ratio by at least 0.1
  each (jackknife intervals over runs).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from verify.controls.forgetting import planted_forgetting, planted_predictors, private_tokens
from verify.experiments.single_task import SingleTask, single_task
from verify.figures import preference as fig
from verify.measures.forgetting import forgetting, forgetting_of
from verify.measures.size import at_equal_size
from verify.measures.sparsity import bf16_sparsity
from verify.registry import Measurement, claim, negative, placebo, positive
from verify.rules import AtLeast, Interval, Within, all_of
from verify.stats import over_seeds

MORE = AtLeast("forgetting, comparator - RL (pass rate)", 0.02, "a priori: two points of pass rate")
NO_DIFFERENCE = Within("forgetting, SFT - RL (pass rate)", 0.02, "a priori: two points of pass rate")
CE_MORE = AtLeast("corpus cross-entropy change, SFT - RL (nats/token)", 0.02, "a priori: about 4 % of the base's")
PREDICTORS = ("kl", "relative_update_norm", "changed_share", "drift_ratio")  # the first is RL's Razor's
KL_BEST = {x: AtLeast(f"rho(KL, forgetting) - rho({x}, forgetting), jackknife over runs", 0.1,
                      "a priori: 0.1 of rank correlation") for x in PREDICTORS[1:]}
PLANTED_SEED = 23  # seeds of the planted predictors and of the permutation of the negative control
PLANTED_RUNS = 30  # synthetic runs of the positive control (the jackknife rule finds the planted predictor in 200 of 200 draws)


def decide_more(differences):
    """forgetting.rl_vs_sft rule on per-seed (comparator - RL) forgetting: the 95 % interval wholly above 0.02 ->
    REPRODUCED, wholly below -> NOT REPRODUCED, else INCONCLUSIVE. Returns the outcome."""
    return MORE.decide(Interval.of(differences))


def seed_differences(ctx, comparators, rl, key: str = "forgetting") -> list[float]:
    """Per seed: ``key`` of the comparator's forgetting record minus RL's."""
    return [forgetting(ctx, c)[key] - forgetting(ctx, r)[key] for c, r in zip(comparators, rl)]


@claim("forgetting.rl_vs_sft", paper=("C18",), title="RL forgets the base's other tasks less than SFT",
       paper_number="stated, no numbers (the authors' summary)",
       rule=f"{MORE.text}, the comparator being SFT at its customary rate, both at matched gain on the trained task; "
            f"reported beside it: {NO_DIFFERENCE.text}; {CE_MORE.text}",
       runs=single_task)
def rl_vs_sft(ctx, runs: SingleTask) -> Measurement:
    """forgetting.rl_vs_sft: per-seed forgetting of SFT minus RL at matched gain; the placebo, the next seed's RL and
    planted forgetting as controls; on-policy SFT, DPO, SimPO and SFT at equal size beside it."""
    rl = list(runs.rl)
    d_sft = seed_differences(ctx, runs.sft, rl)
    decisive = decide_more(d_sft)
    tokens = private_tokens(rl[0].spec.base.corpus.tasks, rl[0].spec.tasks, rl[0].spec.base.corpus.size)
    planted = [forgetting_of(ctx, r, planted_forgetting(r.snapshot("final"), tokens, r.spec.train.seed))["forgetting"]
               - forgetting(ctx, r)["forgetting"] for r in rl]
    equal = [at_equal_size(ctx, s, r, "relative_update_norm") for s, r in zip(runs.sft_size, rl)]
    descriptive = {"no difference (SFT - RL)": NO_DIFFERENCE.decide(Interval.of(d_sft)),
                   "corpus cross-entropy, SFT - RL": CE_MORE.decide(Interval.of(seed_differences(ctx, runs.sft, rl, "ce_change")))}
    for name, comp in (("on-policy SFT", runs.sft_onpolicy), ("DPO", runs.dpo), ("SimPO", runs.simpo),
                       ("SFT at the RL rate, equal ||dW||/||W||", equal)):
        descriptive[f"{name} - RL"] = decide_more(seed_differences(ctx, comp, rl))
    roles = {"rl": rl, "sft": list(runs.sft), "sft_onpolicy": list(runs.sft_onpolicy), "dpo": list(runs.dpo),
             "simpo": list(runs.simpo), "placebo: rl at the sft rate": list(runs.placebo)}
    per_role = {k: [forgetting(ctx, r)["forgetting"] for r in v] for k, v in roles.items()}
    ce = {k: over_seeds([forgetting(ctx, r)["ce_change"] for r in v]) for k, v in roles.items()}
    pl = decide_more(seed_differences(ctx, runs.placebo, rl))
    return Measurement(
        decisive.status,
        f"forgetting SFT - RL {decisive.interval.text('+.3f')} (SFT {over_seeds(per_role['sft']).text('.3f')}, RL "
        f"{over_seeds(per_role['rl']).text('.3f')}); corpus CE change SFT {ce['sft'].text('+.3f')}, RL "
        f"{ce['rl'].text('+.3f')} nats; placebo RL at the SFT rate - RL {pl.interval.text('+.3f')}",
        numbers={**{f"forgetting_{k}": over_seeds(v) for k, v in per_role.items()},
                 **{f"ce_change_{k}": v for k, v in ce.items()},
                 "trained_gain_rl": over_seeds([forgetting(ctx, r)["trained_gain"] for r in rl]),
                 "trained_gain_sft": over_seeds([forgetting(ctx, r)["trained_gain"] for r in runs.sft]),
                 "planted_forgetting_minus_rl": over_seeds(planted)},
        controls=[positive("planted forgetting: the RL run with the input embeddings of the untrained tasks' own tokens "
                           "replaced by random vectors, in SFT's role", decide_more(planted).status),
                  negative("RL of the next seed in SFT's role", decide_more(seed_differences(ctx, rl[1:] + rl[:1], rl)).status),
                  placebo("RL at the SFT rate (matched gain) in SFT's role", pl.status)],
        outcomes={"SFT - RL forgetting at matched gain": decisive}, descriptive=descriptive,
        figures=[fig.forgetting_by_method(per_role, d_sft, MORE.floor)],
        runs={**roles, "sft at the rl rate, equal size": equal},
        notes=[f"Trained on '{runs.task}' alone; forgetting = mean over the other tasks of (base - final) held-out pass "
               "rate, 256 problems per task, the run's own evaluation problems and sampling key for both (an unchanged "
               "model forgets exactly 0); corpus CE on 2,048 held-out pretraining examples.",
               f"Equal size: SFT at the RL rate read at RL's ||dW||/||W|| (steps {[v.step for v in equal]}, held-out gain "
               f"there {[None if v.summary.get('gain') is None else round(v.summary['gain'], 3) for v in equal]})."],
    )


def rank_correlation(x, y) -> float:
    """Spearman rho of ``x`` and ``y`` (NaN when either is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(sps.spearmanr(x, y).statistic)


def fisher_interval(rho: float, n: int) -> tuple[float, float]:
    """95 % Fisher-z interval of a Spearman rho over ``n`` units (Bonett-Wright standard error
    sqrt((1 + rho^2 / 2) / (n - 3)))."""
    if n < 4 or not np.isfinite(rho):
        return float("nan"), float("nan")
    se = np.sqrt((1 + rho ** 2 / 2) / (n - 3))
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    return float(np.tanh(z - 1.96 * se)), float(np.tanh(z + 1.96 * se))


def jackknife_difference(forget, a, b) -> Interval:
    """Jackknife (leave one unit out) t-interval of rho(a, forget) - rho(b, forget): the pseudo-values
    n theta - (n - 1) theta_(-i) as units."""
    f, a, b = (np.asarray(v, float) for v in (forget, a, b))
    n = f.size
    theta = rank_correlation(a, f) - rank_correlation(b, f)
    keep = lambda i: np.arange(n) != i  # noqa: E731
    loo = [rank_correlation(a[keep(i)], f[keep(i)]) - rank_correlation(b[keep(i)], f[keep(i)]) for i in range(n)]
    return Interval.of([n * theta - (n - 1) * t for t in loo])


def decide_kl_best(forget, predictors: dict) -> tuple[str, dict]:
    """forgetting.predictor rule: for every other predictor X, the jackknife interval of rho(KL) - rho(X) wholly above
    0.1 -> REPRODUCED (all three); any wholly below -> NOT REPRODUCED; else INCONCLUSIVE. Returns (status, outcomes)."""
    out = {f"rho(KL) - rho({x})": KL_BEST[x].decide(jackknife_difference(forget, predictors["kl"], predictors[x]))
           for x in PREDICTORS[1:]}
    return all_of(*out.values()), out


def predictor_values(ctx, run) -> dict[str, float]:
    """The four predictors of a run, oriented so that more change is larger."""
    r = run.regime
    return {"kl": run.summary["kl_to_base_final"], "relative_update_norm": r["relative_update_norm"],
            "changed_share": 1.0 - bf16_sparsity(run), "drift_ratio": r["drift_ratio"]}


@claim("forgetting.predictor", paper=("C18", "RL's Razor"),
       title="KL to the base on the new task predicts forgetting better than weight-change size or sparsity",
       paper_number="RL's Razor: KL predicts forgetting; weight-change norm and sparsity do not",
       rule="over every matched run of the single-task experiment (RL, SFT, on-policy SFT, DPO, SimPO, RL at the SFT "
            "rate): " + "; ".join(KL_BEST[x].text for x in PREDICTORS[1:]) + " (all three)", runs=single_task)
def predictor(ctx, runs: SingleTask) -> Measurement:
    """forgetting.predictor: Spearman correlation of forgetting with four predictors over runs; planted predictors and
    KL permuted across runs as controls."""
    roles = {k: list(v) for k, v in runs.matched.items()}
    units = [(role, r) for role, rs in roles.items() for r in rs]
    forget = np.array([forgetting(ctx, r)["forgetting"] for _, r in units])
    values = [predictor_values(ctx, r) for _, r in units]
    preds = {x: np.array([v[x] for v in values]) for x in PREDICTORS}
    status, outcomes = decide_kl_best(forget, preds)
    rhos = {x: rank_correlation(preds[x], forget) for x in PREDICTORS}
    ce = np.array([forgetting(ctx, r)["ce_change"] for _, r in units])
    pos, _ = decide_kl_best(*planted_predictors(PLANTED_RUNS, PLANTED_SEED, PREDICTORS))
    shuffled = {**preds, "kl": np.random.default_rng(PLANTED_SEED).permutation(preds["kl"])}
    neg, _ = decide_kl_best(forget, shuffled)
    best = max(PREDICTORS, key=lambda x: rhos[x] if np.isfinite(rhos[x]) else -np.inf)
    numbers = {f"rho_{x}": {"rho": rhos[x], "low": fisher_interval(rhos[x], len(units))[0],
                            "high": fisher_interval(rhos[x], len(units))[1]} for x in PREDICTORS}
    numbers |= {f"rho_ce_{x}": rank_correlation(preds[x], ce) for x in PREDICTORS}
    numbers |= {"runs": float(len(units)), "best_predictor": best}
    diffs = {x: (o.interval.mean, *o.interval.bounds()) for x, o in zip(PREDICTORS[1:], outcomes.values())}
    return Measurement(
        status, "Spearman rho with forgetting over " + f"{len(units)} runs: " + ", ".join(
            f"{x} {rhos[x]:+.2f} [{numbers[f'rho_{x}']['low']:+.2f}, {numbers[f'rho_{x}']['high']:+.2f}]"
            for x in PREDICTORS) + f"; largest: {best}",
        numbers=numbers, outcomes=outcomes,
        controls=[positive("planted runs whose forgetting rises with KL only", pos),
                  negative("the real runs with KL permuted across runs", neg)],
        figures=[fig.forgetting_against_predictors(forget, preds, [role for role, _ in units], rhos),
                 fig.rho_differences(PREDICTORS[1:], diffs, 0.1)],
        runs=roles,
        notes=["KL: exact token-mean KL(pi || base) on the run's probe, prompts of the trained task only (RL's Razor's "
               "KL on the new task); ||dW||/||W||, drift ratio: the run's regime numbers; changed share: 1 - bf16 "
               "sparsity. Rho intervals in the headline: Fisher z with the Bonett-Wright standard error; the decision "
               "uses jackknife intervals of the differences (runs as units).",
               "Spearman rho with the corpus cross-entropy change: " + ", ".join(
                   f"{x} {numbers[f'rho_ce_{x}']:+.2f}" for x in PREDICTORS) + "."],
    )
