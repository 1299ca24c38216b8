"""C13: the signatures of RLVR (bf16 sparsity, kept spectrum, off-principal updates) appear for RLHF-style preference
training too (DPO, SimPO). Read on the single-task experiment (``verify.experiments.single_task``): every method
fine-tuned on one task from the profile's base, stopped at the matched gain.

Decisive: equivalence with RL, signature by signature (docs/science.md section 6, 'Preference training and
forgetting'): for DPO and for SimPO, the per-seed contrast with RL of the same seed (both at the RL rate and matched
gain) lies within an a-priori margin, by two one-sided tests. The signatures are those of gate3.sparsity,
gate2.spectrum, gate2.energy and regime.magnitude (``verify.measures.signatures``). The controls ask whether the rule
can see a difference: SFT at its customary rate and RL at the SFT rate in the preference role must not read "the
same as RL"; planted updates drawn alike must. Reported beside it: each method against SFT at the RL rate read at
equal update size, by the floors of the gate claims, and SFT at equal update size in the preference role.
"""

from __future__ import annotations

from dataclasses import replace

from verify.controls.preference import planted_pairs
from verify.experiments.single_task import SingleTask, single_task
from verify.figures import preference as fig
from verify.measures.signatures import RATIO_SIGNATURES, SIGNATURES, contrast, run_signature, run_signatures
from verify.measures.size import at_equal_size
from verify.measures.weights import block_pairs
from verify.registry import Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval, Outcome, Within, all_of
from verify.stats import over_seeds

LABELS = {"sparsity": "bf16 sparsity", "nss": "NSS", "angle": "largest top-k angle", "energy": "principal energy",
          "overlap": "principal overlap - null"}
MARGINS = {"sparsity": 0.05, "nss": 0.5, "angle": 0.5, "energy": 0.5, "overlap": 0.02}
_MARGIN_SOURCE = {"sparsity": "a priori: 5 points of share",
                  "nss": "a priori: a factor 1.41, half the factor-2 floor of gate2.spectrum",
                  "angle": "a priori: a factor 1.41, half the factor-2 floor of gate2.spectrum",
                  "energy": "a priori: a factor 1.41, half the factor-2 floor of gate2.energy",
                  "overlap": "a priori: twice regime.magnitude's 0.01, a difference of two runs (power, before the runs)"}
SAME = {s: Within(f"{LABELS[s]}, " + ("log2(preference / RL)" if s in RATIO_SIGNATURES else "preference - RL"),
                  MARGINS[s], _MARGIN_SOURCE[s]) for s in SIGNATURES}
APART = {  # the gate claims' floors, with the run in RL's role against SFT at equal size (descriptive here)
    "sparsity": AtLeast("bf16 sparsity, run - SFT at equal drift ratio", 0.17, "paper: 0.36 - 0.188, as gate3.sparsity"),
    "nss": AtLeast("log2(SFT / run) of NSS at equal ||dW||/||W||", 1.0, "a priori: a factor 2, as gate2.spectrum"),
    "angle": AtLeast("log2(SFT / run) of the top-k angle at equal ||dW||/||W||", 1.0, "a priori: as gate2.spectrum"),
    "energy": AtLeast("log2(SFT / run) of principal energy at equal ||dW||/||W||", 1.0, "a priori: as gate2.energy"),
    "overlap": AtLeast("the run's principal overlap - null", -0.01, "a priori: as regime.magnitude", direction=-1),
}
BY = {"sparsity": "drift_ratio", "nss": "relative_update_norm", "angle": "relative_update_norm",
      "energy": "relative_update_norm", "overlap": "drift_ratio"}
PLANTED_UNITS = tuple(range(12))  # planted update pairs of the positive control


def same_as(runs_sigs, rl_sigs) -> dict[str, Outcome]:
    """{signature: equivalence outcome} of per-seed signatures ``runs_sigs`` against RL's of the same seeds."""
    return {s: SAME[s].decide(Interval.of([contrast(s, a[s], b[s]) for a, b in zip(runs_sigs, rl_sigs)]))
            for s in SIGNATURES}


def decide_same(by_method: dict) -> tuple[str, dict[str, Outcome]]:
    """C13 rule on per-seed signatures: ``by_method`` {method: (its signatures per seed, RL's per seed)}; REPRODUCED
    when every signature of every method is equivalent to RL's (90 % interval inside the margin), NOT REPRODUCED when
    any lies wholly outside its margin, else INCONCLUSIVE. Returns (status, {"<method> vs RL: <signature>": outcome})."""
    outcomes = {f"{m} vs RL: {LABELS[s]}": replace(o, statistic=o.statistic.replace("preference", m))
                for m, (sigs, rl) in by_method.items() for s, o in same_as(sigs, rl).items()}
    return all_of(*outcomes.values()), outcomes


def apart_value(name: str, run_sig: dict, sft_sig: dict) -> float:
    """The gate claims' statistic of signature ``name`` for a run against SFT read at equal size: sparsity run - SFT,
    log2(SFT / run) for the ratio signatures, the run's own overlap excess."""
    if name == "overlap":
        return run_sig[name]
    if name == "sparsity":
        return run_sig[name] - sft_sig[name]
    return contrast(name, sft_sig[name], run_sig[name])


def apart(ctx, runs: SingleTask, role_runs) -> tuple[dict[str, Outcome], list]:
    """{signature: outcome of ``APART``} for ``role_runs`` against SFT at the RL rate read at each run's size (drift
    ratio or ||dW|| / ||W||, by signature), and the equal-size views read."""
    out, views = {}, []
    for s in SIGNATURES:
        vs = [at_equal_size(ctx, sz, r, BY[s]) for sz, r in zip(runs.sft_size, role_runs)]
        views += vs
        vals = [apart_value(s, {s: run_signature(ctx, r, s)}, {s: run_signature(ctx, v, s)}) for r, v in zip(role_runs, vs)]
        out[s] = APART[s].decide(Interval.of(vals))
    return out, views


@claim("preference.signatures", paper=("C13",), title="DPO and SimPO updates carry the signatures of RL",
       paper_number="stated, no numbers: the same signatures appear for RLHF-style preference training (DPO, SimPO)",
       rule="for DPO and for SimPO against RL of the same seed (single task, both at the RL rate and matched gain), "
            "each of: " + "; ".join(SAME[s].text for s in SIGNATURES) + " (all ten); SFT at its customary rate and RL "
            "at the SFT rate in the preference role must not read the same", runs=single_task)
def signatures(ctx, runs: SingleTask) -> Measurement:
    """preference.signatures (C13): DPO and SimPO against RL on five signatures (equivalence), with SFT and RL at the
    SFT rate in the preference role and planted updates as controls, and every role against SFT at equal size."""
    sig = lambda rs: [run_signatures(ctx, r) for r in rs]  # noqa: E731
    rl, dpo, simpo, sft, fast = sig(runs.rl), sig(runs.dpo), sig(runs.simpo), sig(runs.sft), sig(runs.placebo)
    status, outcomes = decide_same({"DPO": (dpo, rl), "SimPO": (simpo, rl)})
    planted = planted_pairs(block_pairs(ctx, runs.rl[0]), PLANTED_UNITS)
    pos, _ = decide_same({"planted": ([a for a, _ in planted], [b for _, b in planted])})
    neg_sft, sft_out = decide_same({"SFT": (sft, rl)})
    neg_fast, fast_out = decide_same({"RL at the SFT rate": (fast, rl)})
    descriptive, views = {}, []
    for name, role_runs in (("RL", runs.rl), ("DPO", runs.dpo), ("SimPO", runs.simpo)):
        o, v = apart(ctx, runs, role_runs)
        descriptive |= {f"{name} against SFT at equal size: {LABELS[s]}": x for s, x in o.items()}
        views += v
    eq_rl = {s: [at_equal_size(ctx, sz, r, BY[s]) for sz, r in zip(runs.sft_size, runs.rl)] for s in SIGNATURES}
    eq_same = {s: SAME[s].decide(Interval.of([contrast(s, run_signature(ctx, v, s), b[s]) for v, b in zip(eq_rl[s], rl)]))
               for s in SIGNATURES}
    descriptive |= {f"SFT at equal size in the preference role: {LABELS[s]}": o for s, o in eq_same.items()}
    contrasts = {s: {m: [contrast(s, a[s], b[s]) for a, b in zip(v, rl)] for m, v in (("DPO", dpo), ("SimPO", simpo))}
                 for s in SIGNATURES}
    means = {f"{role}_{s}": over_seeds([x[s] for x in v]) for role, v in
             (("rl", rl), ("dpo", dpo), ("simpo", simpo), ("sft", sft), ("placebo", fast)) for s in SIGNATURES}
    n_same = sum(o.status == "REPRODUCED" for o in outcomes.values())
    headline = (f"equivalent to RL on {n_same}/{len(outcomes)} (method, signature): " + "; ".join(
        f"{m} " + ", ".join(f"{s} {outcomes[f'{m} vs RL: {LABELS[s]}'].interval.text('+.3g')}" for s in SIGNATURES)
        for m in ("DPO", "SimPO")) + f"; SFT in the preference role reads {neg_sft}, RL at the SFT rate {neg_fast}")
    return Measurement(
        status, headline, numbers={**means, "equivalent": float(n_same)}, outcomes=outcomes, descriptive=descriptive,
        controls=[positive("planted: two isotropic updates of equal size drawn alike, in the preference and RL roles", pos),
                  negative("SFT at its customary rate (matched gain) in the preference role", neg_sft),
                  negative("RL at the SFT rate (matched gain, 10x step) in the preference role", neg_fast)],
        figures=[fig.contrasts_against_margins(contrasts, MARGINS, {s: SAME[s].statistic for s in SIGNATURES},
                                               f"C13: DPO and SimPO against RL on '{runs.task}' (matched gain, RL rate)")],
        runs={"rl": list(runs.rl), "dpo": list(runs.dpo), "simpo": list(runs.simpo), "sft": list(runs.sft),
              "placebo: rl at the sft rate": list(runs.placebo), "sft at the rl rate, equal size": views},
        notes=[f"Single task '{runs.task}', seeds {list(runs.seeds)}. Contrasts: differences for sparsity and overlap, "
               "log2 ratios for NSS, angle and energy; overlap = share of changed block weights in the principal mask "
               "(alpha 0.5, k 4) minus the magnitude-matched null's expectation (theory.null), pooled over block matrices.",
               "Controls: " + "; ".join(f"{k} {o.interval.text('+.3g')} -> {o.status}" for k, o in {**sft_out, **fast_out}.items()),
               "Descriptive rows: the gate claims' floors with the run in RL's role against SFT at the RL rate read at the "
               "run's drift ratio (sparsity) or ||dW||/||W|| (spectra, energy); overlap is the run's own excess. 'SFT at "
               "equal size in the preference role' asks whether the signatures tell SFT from RL at RL's size at all."],
    )

