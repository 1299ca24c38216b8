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

import numpy as np

from toy_models.interventions import edited_tensors
from toy_models.transformer import matrix_name
from verify.controls.masks import planted_edit
from verify.experiments.cases import EDITED_SEEDS, case_seeds, edit_layer, intervention as intervention_runs, sgd_lr
from verify.figures import cases as fig
from verify.measures.frames import edit_record, kernels, region_excess, run_frames
from verify.measures.jaccard import MIN_EXCESS
from verify.measures.training import first_update_norm
from verify.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Measurement,
    claim,
    negative,
    positive,
    report_section,
)
from verify.report import est_text, figure_lines
from verify.stats import over_seeds

DECISIVE = ("rotate_vo", "permute_heads")  # the paper's two edits; decided under AdamW (the paper's optimizer)
RANDOM_SHARE = 0.3  # "falls to the random level": keeps less than this share of the unedited pairs' excess
KEPT_SHARE = 0.7  # "only there": untouched matrices keep more than this share


def decide_intervention(edited_excess, untouched_excess, ref_edited: float, ref_untouched: float) -> tuple[str, object, object]:
    """C12 rule, in raw coordinates. Per edited-vs-reference pair the excess Jaccard (J - Bernoulli level) in the
    edited matrices and in the untouched ones, each divided by the mean excess of unedited pairs in the same
    matrices (the share of the unedited overlap that survives). The unedited pairs must overlap beyond chance
    (both reference excesses >= MIN_EXCESS), else INCONCLUSIVE. REPRODUCED iff the edited share's CI lies below
    RANDOM_SHARE and the untouched share's CI above KEPT_SHARE; NOT REPRODUCED iff the edited share's CI lies
    above RANDOM_SHARE or the untouched share's CI below KEPT_SHARE; else INCONCLUSIVE."""
    if not (ref_edited >= MIN_EXCESS and ref_untouched >= MIN_EXCESS):
        return INCONCLUSIVE, over_seeds([]), over_seeds([])
    e = over_seeds(np.asarray(edited_excess, float) / ref_edited)
    u = over_seeds(np.asarray(untouched_excess, float) / ref_untouched)
    if e.high < RANDOM_SHARE and u.low > KEPT_SHARE:
        return REPRODUCED, e, u
    if e.low > RANDOM_SHARE or u.high < KEPT_SHARE:
        return NOT_REPRODUCED, e, u
    return INCONCLUSIVE, e, u


def decide_edits(statuses) -> str:
    """The claim over the decisive edits: all REPRODUCED -> REPRODUCED; any NOT REPRODUCED -> NOT REPRODUCED;
    else INCONCLUSIVE."""
    if all(s == REPRODUCED for s in statuses):
        return REPRODUCED
    if any(s == NOT_REPRODUCED for s in statuses):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def _pairs_of_edit(ctx, edited_runs, ref_frames, record, w0_orig, edited, untouched) -> tuple[dict, list]:
    """Excess (Bernoulli, magnitude) of every edited run against every reference of another seed, raw and mapped
    back, in the edited and the untouched matrices; and the mapped-back excess of same-seed pairs (edited matrices)."""
    orig_strata = ref_frames[0]["strata_raw"]
    rows = {"raw_edited": [], "raw_untouched": [], "back_edited": [], "back_untouched": []}
    same_seed_back = []
    for run in edited_runs:
        fr = run_frames(ctx, run, record, w0_orig)
        for rf in ref_frames:
            if rf["seed"] == run.spec.train.seed:  # same seed: the same samples; only the mapped frame is read
                same_seed_back.append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, edited))
                continue
            rows["raw_edited"].append(region_excess(fr["raw"], rf["raw"], fr["strata_raw"], orig_strata, edited))
            rows["raw_untouched"].append(region_excess(fr["raw"], rf["raw"], fr["strata_raw"], orig_strata, untouched))
            rows["back_edited"].append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, edited))
            rows["back_untouched"].append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, untouched))
    return rows, same_seed_back


@claim("geometry.intervention", paper=("C12",),
       title="a function-preserving edit of one block moves the mask overlap to the random level there only",
       paper_number="overlap falls to the random level in the edited layer, and only there (no numbers)",
       rule=f"RL from rotate_vo- and permute_heads-edited bases vs unedited RL of other seeds, AdamW, raw coordinates: "
            f"excess Jaccard (J - pq/(p+q-pq)) per pair as a share of the unedited pairs' excess (needs >= {MIN_EXCESS}); "
            f"both edits: edited-matrix share CI < {RANDOM_SHARE} and untouched share CI > {KEPT_SHARE} -> REPRODUCED; "
            f"either edit: edited share CI > {RANDOM_SHARE} or untouched CI < {KEPT_SHARE} -> NOT REPRODUCED; else "
            "INCONCLUSIVE. Original frame, permute_mlp and SGD (lr matched to AdamW's first-step update norm) reported",
       runs=intervention_runs)
def intervention(ctx, runs) -> Measurement:
    """geometry.intervention (C12): mask overlap of edited against unedited RL, raw and original frames, AdamW and SGD."""
    p = ctx.profile
    seeds = case_seeds(p)
    results, used, statuses = {}, [], {}
    numbers: dict = {"sgd_lr": sgd_lr(p), "edit_layer": edit_layer(p)}
    for opt, arms in runs.items():
        refs = list(arms["references"])
        used += refs
        w0_orig = kernels(refs[0].snapshot("base", master=True))
        ref_frames = [dict(run_frames(ctx, r, None, w0_orig), seed=r.spec.train.seed) for r in refs]
        orig_strata = ref_frames[0]["strata_raw"]
        for kind, edited_runs in arms["edited"].items():
            record = edit_record(ctx, edited_runs[0].spec)
            edited = [n for n in (matrix_name(t) for t in edited_tensors(record)) if n in orig_strata]
            untouched = [n for n in orig_strata if n not in edited]
            ref_e = [region_excess(ref_frames[i]["raw"], ref_frames[j]["raw"], orig_strata, orig_strata, edited)
                     for i in range(len(refs)) for j in range(i + 1, len(refs))]
            ref_u = [region_excess(ref_frames[i]["raw"], ref_frames[j]["raw"], orig_strata, orig_strata, untouched)
                     for i in range(len(refs)) for j in range(i + 1, len(refs))]
            used += list(edited_runs)
            rows, same_seed_back = _pairs_of_edit(ctx, edited_runs, ref_frames, record, w0_orig, edited, untouched)
            ref_edited, ref_untouched = float(np.mean([x[0] for x in ref_e])), float(np.mean([x[0] for x in ref_u]))
            first = lambda key: [x[0] for x in rows[key]]  # noqa: E731
            status, e_share, u_share = decide_intervention(first("raw_edited"), first("raw_untouched"), ref_edited, ref_untouched)
            back_status, be_share, _ = decide_intervention(first("back_edited"), first("back_untouched"), ref_edited, ref_untouched)
            statuses[(opt, kind)] = status
            results[(opt, kind)] = {"rows": rows, "ref_edited": ref_edited, "ref_untouched": ref_untouched, "edited": edited}
            numbers[f"{opt}/{kind}"] = {
                "status_raw": status, "status_original_frame": back_status, "edited_matrices": edited,
                "unedited_excess_edited_matrices": ref_edited, "unedited_excess_untouched_matrices": ref_untouched,
                "raw_excess_edited": over_seeds(first("raw_edited")), "raw_excess_untouched": over_seeds(first("raw_untouched")),
                "original_frame_excess_edited": over_seeds(first("back_edited")),
                "raw_share_edited": e_share, "raw_share_untouched": u_share, "original_frame_share_edited": be_share,
                "raw_magnitude_excess_edited": over_seeds([x[1] for x in rows["raw_edited"]]),
                "original_frame_magnitude_excess_edited": over_seeds([x[1] for x in rows["back_edited"]]),
                "unedited_magnitude_excess_edited_matrices": float(np.mean([x[1] for x in ref_e])),
                "same_seed_original_frame_excess_edited": over_seeds([x[0] for x in same_seed_back]),
            }
    status = decide_edits([statuses[("adamw", k)] for k in DECISIVE])
    # controls through the same rule: planted masks on the real matrices, the rotate_vo region as "edited"
    strata0 = run_frames(ctx, runs["adamw"]["references"][0], None, {})["strata_raw"]
    region = results[("adamw", "rotate_vo")]["edited"]
    pos = decide_intervention(*planted_edit(strata0, region, 51, moved=True))[0]
    neg = decide_intervention(*planted_edit(strata0, region, 52, moved=False))[0]
    # first-step update norms: the SGD lr rule checked on the runs themselves
    adam1 = [first_update_norm(r) for r in runs["adamw"]["references"]]
    sgd1 = [first_update_norm(r) for r in runs["sgd"]["references"]]
    numbers["first_step_update_norm_ratio_sgd_over_adamw"] = over_seeds(np.asarray(sgd1) / np.asarray(adam1))
    keys = list(results)
    bars = {region: {frame: [over_seeds([v[0] for v in results[k]["rows"][f"{frame}_{region}"]]) for k in keys]
                     for frame in ("raw", "back")} for region in ("edited", "untouched")}
    figure = fig.edited_against_unedited(keys, bars, {region: [results[k][f"ref_{region}"] for k in keys]
                                                      for region in ("edited", "untouched")}, edit_layer(p))
    a, h = numbers["adamw/rotate_vo"], numbers["adamw/permute_heads"]
    too_little = "" if min(a["unedited_excess_edited_matrices"], a["unedited_excess_untouched_matrices"]) >= MIN_EXCESS else (
        f"unedited runs overlap too little beyond the random level to test a loss (needs >= {MIN_EXCESS}; raw excess of "
        f"edited vs unedited in V,O {a['raw_excess_edited'].text('+.3f')}); ")
    return Measurement(
        status,
        too_little + f"AdamW, raw frame, share of the unedited excess kept: rotate_vo edited {a['raw_share_edited'].text('.2f')} / "
        f"untouched {a['raw_share_untouched'].text('.2f')}, permute_heads {h['raw_share_edited'].text('.2f')} / "
        f"{h['raw_share_untouched'].text('.2f')} (unedited excess {a['unedited_excess_edited_matrices']:+.3f} in V,O); "
        f"original frame rotate_vo {a['original_frame_share_edited'].text('.2f')}; SGD rotate_vo raw "
        f"{numbers['sgd/rotate_vo']['raw_share_edited'].text('.2f')}, original frame "
        f"{numbers['sgd/rotate_vo']['original_frame_share_edited'].text('.2f')}",
        numbers=numbers,
        controls=[positive("planted shared preferred set, moved away in the edited matrices", pos),
                  negative("planted shared preferred set, left in place in the edited matrices", neg)],
        figures=[figure], runs=used,
        notes=[f"Edited runs: seeds {list(seeds[:EDITED_SEEDS])}, compared with unedited runs of the other seeds "
               f"{list(seeds)} (CI over those pairs; pairs share runs, so the interval is optimistic); unedited excess = "
               "mean over all unedited pairs. Same-seed pairs are left out of the decision (they share samples); their "
               "original-frame excess is reported as 'same_seed_original_frame_excess_edited' (a permuted run mapped "
               "back should nearly equal its unedited twin).",
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
             f"Paper: the mask overlap falls to the random level in the edited layer, and only there. Verdict {v.status}.", "",
             "| optimizer / edit | unedited excess (edited matrices) | raw: edited | raw: untouched | original frame: edited |",
             "|---|---|---|---|---|"]
    for key, row in n.items():
        if isinstance(row, dict) and "raw_excess_edited" in row:
            lines.append(f"| {key} | {est_text(row.get('unedited_excess_edited_matrices'))} | "
                         f"{est_text(row.get('raw_excess_edited'))} | {est_text(row.get('raw_excess_untouched'))} | "
                         f"{est_text(row.get('original_frame_excess_edited'))} |")
    lines += ["", "Excess = Jaccard - pq/(p+q-pq) (0 = the random level), per edited-vs-unedited pair of different seeds.", ""]
    return "\n".join(lines + figure_lines(v))
