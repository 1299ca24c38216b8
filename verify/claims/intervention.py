"""Case study of the causal test (docs/science.md claim C12): a function-preserving edit of one block moves the
overlap of RL update masks to the random level in that block only.

Runs (``verify.experiments.cases.intervention``): RL from the original base (the references, independent seeds)
and RL from bases edited by ``toy_models.interventions`` (``rotate_vo``: a Haar rotation per head of V's outputs
and O's inputs; ``permute_heads``; ``permute_mlp``), applied by the trainer to the pretrained base before its
bf16 rounding. Every edited run is compared with every reference run of another seed, per block matrix, by the
Jaccard index of the bf16 changed masks against the Bernoulli level (the paper's "random level") and the
magnitude-matched level, in raw coordinates and mapped back to the original frame
(``verify.measures.frames``).

Regions: the matrices the edit touched (in the (out, in) names of ``weight_matrices``) and the other block
matrices. On a one-block base (the tiny base of ``tiny`` and ``quick``) "untouched layers" are the untouched
matrices of the same block (e.g. Q, K and the MLP for ``rotate_vo``).

Optimizers: AdamW (the profile's lr) and SGD, whose lr is matched to AdamW's first step by a rule fixed
before any run (``verify.experiments.cases.sgd_lr``). SGD's update is equivariant under orthogonal
reparametrisations, Adam's is not (its per-coordinate normalisation picks a basis): under SGD a rotated run
mapped back is, in law, an unedited run, so any loss of overlap in the original frame under Adam is an
optimizer-basis effect.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from toy_models.interventions import edited_tensors
from toy_models.transformer import matrix_name
from verify.controls.masks import planted_edit_runs
from verify.experiments.cases import EDITED_SEEDS, case_seeds, edit_layer, intervention as intervention_runs, sgd_lr
from verify.figures import cases as fig
from verify.measures.frames import edit_record, kernels, region_excess, run_frames
from verify.measures.jaccard import MIN_EXCESS
from verify.measures.training import first_update_norm
from verify.registry import Measurement, claim, negative, positive, report_section
from verify.report import est_text, figure_lines
from verify.rules import AtLeast, Interval, Outcome, all_of

DECISIVE = ("rotate_vo", "permute_heads")  # the paper's two edits; decided under AdamW (the paper's optimizer)
PLANTED_SEED = 51  # draws of the planted positive control
EDITED = AtLeast("edited matrices: share of the unedited pairs' excess Jaccard kept", 0.3, "a priori",
                 direction=-1)  # "falls to the random level there"
UNTOUCHED = AtLeast("untouched matrices: share of the unedited pairs' excess Jaccard kept", 0.7,
                    "a priori")  # "and only there"


def decide_intervention(edited_excess, untouched_excess, ref_edited: float, ref_untouched: float
                        ) -> tuple[str, Outcome, Outcome]:
    """C12 rule for one edit. Per edited-vs-unedited pair of different seeds the excess Jaccard (J - Bernoulli
    level, mean over matrices) in the edited matrices and in the untouched ones, each divided by the mean excess of
    the unedited pairs in the same matrices (the share of the unedited overlap that survives). The edited share's
    95 % interval wholly below 0.3 and the untouched share's wholly above 0.7 -> REPRODUCED (``all_of``); either
    wholly on the other side -> NOT REPRODUCED; else INCONCLUSIVE. A share needs an unedited overlap to lose: when
    either unedited excess is below MIN_EXCESS both outcomes are decided on an empty interval (INCONCLUSIVE)."""
    if not (ref_edited >= MIN_EXCESS and ref_untouched >= MIN_EXCESS):
        e, u = EDITED.decide(Interval.of([])), UNTOUCHED.decide(Interval.of([]))
    else:
        e = EDITED.decide(Interval.of(np.asarray(edited_excess, float) / ref_edited))
        u = UNTOUCHED.decide(Interval.of(np.asarray(untouched_excess, float) / ref_untouched))
    return all_of(e, u), e, u


def pair_excess(edited, refs, names) -> list[float]:
    """Excess Jaccard (J - Bernoulli level, mean over the matrices ``names``) of every edited run against every
    reference run of another seed: ``edited`` and ``refs`` hold (seed, masks, strata) per run."""
    return [region_excess(m, rm, st, rst, names)[0] for s, m, st in edited for rs, rm, rst in refs if rs != s]


def unedited_pairs(refs, names) -> list[float]:
    """Excess Jaccard in the matrices ``names`` of every pair of reference runs, each pair once."""
    return [region_excess(a[1], b[1], a[2], b[2], names)[0] for i, a in enumerate(refs) for b in refs[i + 1:]]


def reference_excess(refs, names) -> float:
    """Mean excess Jaccard in the matrices ``names`` over every pair of reference runs."""
    return float(np.mean(unedited_pairs(refs, names)))


def unedited_control(refs, edited_names, untouched_names) -> str:
    """The negative control: every pair of unedited runs in the place of the edited-vs-unedited pairs (the edit
    absent by construction), through ``decide_intervention``."""
    e, u = unedited_pairs(refs, edited_names), unedited_pairs(refs, untouched_names)
    return decide_intervention(e, u, float(np.mean(e)), float(np.mean(u)))[0]


def decide_edit(edited, refs, edited_names, untouched_names) -> tuple[str, Outcome, Outcome]:
    """``decide_intervention`` on runs: edited and reference runs as (seed, masks, strata)."""
    return decide_intervention(pair_excess(edited, refs, edited_names), pair_excess(edited, refs, untouched_names),
                               reference_excess(refs, edited_names), reference_excess(refs, untouched_names))


def planted_control(strata: dict, edited_names, refs: int, edited_runs: int, seed: int) -> str:
    """The positive control: ``planted_edit_runs`` (a shared preferred set, moved away in the edited matrices of the
    edited runs) with the claim's design, at least 3 seeds of each (the least an empirical claim uses): references
    of seeds 0, 1, ..., edited runs of the first seeds, each against the references of the other seeds, through
    ``decide_edit``."""
    refs, edited_runs = max(3, refs), max(3, edited_runs)
    ref_masks, edited = planted_edit_runs(strata, edited_names, refs, edited_runs, seed)
    untouched = [n for n in strata if n not in edited_names]
    return decide_edit([(s, m, strata) for s, m in enumerate(edited)], [(s, m, strata) for s, m in enumerate(ref_masks)],
                       edited_names, untouched)[0]


@claim("geometry.intervention", paper=("C12",),
       title="a function-preserving edit of one block moves the mask overlap to the random level there only",
       paper_number="overlap falls to the random level in the edited layer, and only there (no numbers)",
       rule=f"{EDITED.text}; and {UNTOUCHED.text}; RL from rotate_vo- and permute_heads-edited bases ({EDITED_SEEDS} "
            "seeds) against unedited RL of the other seeds, AdamW, raw coordinates; units = edited-vs-unedited pairs of "
            "different seeds (pairs share runs: the interval is optimistic); excess = J - pq/(p+q-pq), share of the "
            f"unedited pairs' excess (undefined, INCONCLUSIVE, when that is below {MIN_EXCESS}); both edits must "
            "reproduce. Original frame, permute_mlp and SGD (lr matched to AdamW's first-step update norm) reported",
       runs=intervention_runs)
def intervention(ctx, runs) -> Measurement:
    """geometry.intervention (C12): mask overlap of edited against unedited RL, raw and original frames, AdamW and SGD."""
    p = ctx.profile
    seeds = case_seeds(p)
    results, outcomes, controls, shown = {}, {}, [], {}
    numbers: dict = {"sgd_lr": sgd_lr(p), "edit_layer": edit_layer(p)}
    for opt, arms in runs.items():
        refs = list(arms["references"])
        w0_orig = kernels(refs[0].snapshot("base", master=True))
        ref_frames = [dict(run_frames(ctx, r, None, w0_orig), seed=r.spec.train.seed) for r in refs]
        orig_strata = ref_frames[0]["strata_raw"]
        ref_items = [(rf["seed"], rf["raw"], orig_strata) for rf in ref_frames]
        for kind, edited_runs in arms["edited"].items():
            record = edit_record(ctx, edited_runs[0].spec)
            edited = [n for n in (matrix_name(t) for t in edited_tensors(record)) if n in orig_strata]
            untouched = [n for n in orig_strata if n not in edited]
            frames = [(r.spec.train.seed, run_frames(ctx, r, record, w0_orig)) for r in edited_runs]
            raw = [(s, fr["raw"], fr["strata_raw"]) for s, fr in frames]
            back = [(s, fr["back"], orig_strata) for s, fr in frames]
            ref_e, ref_u = reference_excess(ref_items, edited), reference_excess(ref_items, untouched)
            status, e_out, u_out = decide_edit(raw, ref_items, edited, untouched)
            back_status, be_out, bu_out = decide_edit(back, ref_items, edited, untouched)
            same_seed_back = [region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, edited)[0]
                              for s, fr in frames for rf in ref_frames if rf["seed"] == s]
            results[(opt, kind)] = {"raw": {"edited": pair_excess(raw, ref_items, edited),
                                            "untouched": pair_excess(raw, ref_items, untouched)},
                                    "back": {"edited": pair_excess(back, ref_items, edited),
                                             "untouched": pair_excess(back, ref_items, untouched)},
                                    "ref_edited": ref_e, "ref_untouched": ref_u, "edited": edited}
            numbers[f"{opt}/{kind}"] = {
                "status_raw": status, "status_original_frame": back_status, "edited_matrices": edited,
                "unedited_excess_edited_matrices": ref_e, "unedited_excess_untouched_matrices": ref_u,
                "raw_excess_edited": Interval.of(results[(opt, kind)]["raw"]["edited"]),
                "raw_excess_untouched": Interval.of(results[(opt, kind)]["raw"]["untouched"]),
                "original_frame_excess_edited": Interval.of(results[(opt, kind)]["back"]["edited"]),
                "raw_share_edited": e_out.interval, "raw_share_untouched": u_out.interval,
                "original_frame_share_edited": be_out.interval, "original_frame_share_untouched": bu_out.interval,
                "same_seed_original_frame_excess_edited": Interval.of(same_seed_back)}
            if opt == "adamw" and kind in DECISIVE:
                outcomes |= {f"{kind}: {o.statistic}": replace(o, statistic=f"{kind}: {o.statistic}") for o in (e_out, u_out)}
                shown |= {f"{kind}: edited": e_out, f"{kind}: untouched": u_out}
                # negative control: the unedited runs in the edited role (the edit absent by construction)
                controls.append(negative(f"unedited pairs in the edited role ({kind}'s matrices)",
                                         unedited_control(ref_items, edited, untouched)))
                controls.append(positive(f"planted shared preferred set, moved away in {kind}'s matrices",
                                         planted_control(orig_strata, edited, len(refs), len(edited_runs), PLANTED_SEED)))
    status = all_of(*outcomes.values())
    # first-step update norms: the SGD lr rule checked on the runs themselves
    adam1 = [first_update_norm(r) for r in runs["adamw"]["references"]]
    sgd1 = [first_update_norm(r) for r in runs["sgd"]["references"]]
    numbers["first_step_update_norm_ratio_sgd_over_adamw"] = Interval.of(np.asarray(sgd1) / np.asarray(adam1))
    keys = list(results)
    bars = {region: {frame: [Interval.of(results[k][frame][region]) for k in keys] for frame in ("raw", "back")}
            for region in ("edited", "untouched")}
    figure = fig.edited_against_unedited(keys, bars, {region: [results[k][f"ref_{region}"] for k in keys]
                                                      for region in ("edited", "untouched")}, edit_layer(p))
    a, h = numbers["adamw/rotate_vo"], numbers["adamw/permute_heads"]
    too_little = "" if min(a["unedited_excess_edited_matrices"], a["unedited_excess_untouched_matrices"]) >= MIN_EXCESS else (
        f"unedited runs overlap too little beyond the random level to test a loss (needs >= {MIN_EXCESS}; unedited "
        f"excess {a['unedited_excess_edited_matrices']:+.3f} in V,O); ")
    return Measurement(
        status,
        too_little + f"AdamW, raw frame, share of the unedited excess kept: rotate_vo edited {a['raw_share_edited'].text('.2f')} / "
        f"untouched {a['raw_share_untouched'].text('.2f')}, permute_heads {h['raw_share_edited'].text('.2f')} / "
        f"{h['raw_share_untouched'].text('.2f')} (unedited excess {a['unedited_excess_edited_matrices']:+.3f} in V,O); "
        f"original frame rotate_vo {a['original_frame_share_edited'].text('.2f')}; SGD rotate_vo raw "
        f"{numbers['sgd/rotate_vo']['raw_share_edited'].text('.2f')}, original frame "
        f"{numbers['sgd/rotate_vo']['original_frame_share_edited'].text('.2f')}",
        numbers=numbers, controls=controls, outcomes=outcomes,
        figures=[fig.outcome_intervals(shown, "share of the unedited pairs' excess kept",
                                       "C12: AdamW, raw coordinates (edited: below 0.3; untouched: above 0.7)"), figure],
        runs={f"{kind} ({opt})": rs for opt, o in runs.items()
              for kind, rs in (("unedited", list(o["references"])), ("edited", [r for v in o["edited"].values() for r in v]))},
        notes=[f"Edited runs: seeds {list(seeds[:EDITED_SEEDS])}, each compared with the unedited runs of the other "
               f"seeds {list(seeds)}; the interval is over those pairs, which share runs, so it is optimistic; unedited "
               "excess = mean over all unedited pairs. Same-seed pairs are left out of the decision (they share "
               "samples); their original-frame excess is 'same_seed_original_frame_excess_edited' (a permuted run mapped "
               "back should nearly equal its unedited twin).",
               "Positive control: synthetic runs on the real strata (as many references and edited runs as here, at least "
               "3 of each) sharing one preferred set, shuffled in the edited matrices of the edited runs; negative "
               "control: every pair of unedited runs in the place of the edited-vs-unedited pairs, through the same rule.",
               f"SGD lr {sgd_lr(p):g} by the first-step norm rule (lr * sqrt(n_grad) / |g_1|); measured first-step update "
               f"norm SGD / AdamW {numbers['first_step_update_norm_ratio_sgd_over_adamw'].text('.2f')}.",
               "Raw frame: strata of each run's own base (a rotated V/O has new magnitudes); original frame: strata of "
               "the unedited base. A permutation moves the weights' magnitudes with them, so a drop in raw coordinates "
               "under permutation is expected from magnitude (ULP) alone; rotate_vo changes the magnitudes themselves.",
               "Rotations are exact only to bf16 precision after the edited base is rounded (toy_models/interventions.py)."],
    )


@report_section
def intervention_section(results) -> str:
    """report.md section 'Case study C12': excess overlap of edited against unedited runs, per optimizer and edit,
    in the edited and untouched matrices and both frames, beside the paper's statement."""
    v = {c.id: verdict for c, verdict in results}.get("geometry.intervention")
    if v is None:
        return ""
    n = v.numbers
    lines = ["## Case study C12: a function-preserving edit", "",
             f"Paper: the mask overlap falls to the random level in the edited layer, and only there. Verdict {v.cell}.", "",
             "| optimizer / edit | unedited excess (edited matrices) | raw: edited | raw: untouched | original frame: edited |",
             "|---|---|---|---|---|"]
    for key, row in n.items():
        if isinstance(row, dict) and "raw_excess_edited" in row:
            lines.append(f"| {key} | {est_text(row.get('unedited_excess_edited_matrices'))} | "
                         f"{est_text(row.get('raw_excess_edited'))} | {est_text(row.get('raw_excess_untouched'))} | "
                         f"{est_text(row.get('original_frame_excess_edited'))} |")
    lines += ["", "Excess = Jaccard - pq/(p+q-pq) (0 = the random level), per edited-vs-unedited pair of different seeds.", ""]
    return "\n".join(lines + figure_lines(v))
