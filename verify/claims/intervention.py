"""Case study of the causal test (docs/science.md claim C12): a function-preserving edit of one block moves
the overlap of RL update masks to the random level in that block only.

Runs: RL from the original base (the references, independent seeds) and RL from bases edited by
``toy_models.interventions`` (``rotate_vo``: a Haar rotation per head of V's outputs and O's inputs;
``permute_heads``; ``permute_mlp``), applied by the trainer to the pretrained base before its bf16
rounding. Every edited run is compared with every reference run of another seed, per block matrix, by the
Jaccard index of the bf16 changed masks against the Bernoulli level (the paper's "random level") and the
magnitude-matched level of ``verify.claims.consistency``, in two frames:

- raw coordinates: the edited run's changed mask as it is, against the reference's;
- original frame: the edited run's change mapped back through the inverse edit. Permutations map masks
  exactly (``map_mask_back``). A rotation mixes coordinates, so its fp32 master update is rotated back
  (``map_update_back``) and the mask re-derived as bf16(W0_orig + dW_back) against W0_orig, W0_orig being
  the released bf16 base of the reference runs.

Regions: the matrices the edit touched (in the (out, in) names of ``weight_matrices``) and the other block
matrices. On a one-block base (the tiny base of ``tiny`` and ``quick``) "untouched layers" are the untouched
matrices of the same block (e.g. Q, K and the MLP for ``rotate_vo``).

Optimizers: AdamW (the profile's lr) and SGD, whose lr is matched to AdamW's first step by a rule fixed
before any run (``sgd_lr``). SGD's update is equivariant under orthogonal reparametrisations, Adam's is not
(its per-coordinate normalisation picks a basis): under SGD a rotated run mapped back is, in law, an
unedited run, so any loss of overlap in the original frame under Adam is an optimizer-basis effect.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from theory.precision import changed_mask_bitwise, to_bf16
from toy_models.finetune import RunSpec
from toy_models.interventions import EditConfig, apply_edit, edited_tensors, map_mask_back, map_update_back
from toy_models.transformer import flat_params, init_params, matrix_name, weight_matrices
from verify.claims.consistency import (
    MIN_EXCESS,
    _planted_masks,
    case_seeds,
    est_text,
    figure_lines,
    jaccard_triplet,
    rl_run,
    ulp_strata,
)
from verify.common import block_matrices
from verify.knobs import round_lr
from verify.profiles import get_profile
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
from verify.stats import over_seeds

KINDS = {"adamw": ("rotate_vo", "permute_heads", "permute_mlp"), "sgd": ("rotate_vo", "permute_heads")}
DECISIVE = ("rotate_vo", "permute_heads")  # the paper's two edits; decided under AdamW (the paper's optimizer)
EDIT_SEED = 0  # draws the rotation / permutation
EDITED_SEEDS = 2  # edited runs per (optimizer, kind): the first case seeds
RANDOM_SHARE = 0.3  # "falls to the random level": keeps less than this share of the unedited pairs' excess
KEPT_SHARE = 0.7  # "only there": untouched matrices keep more than this share

# SGD lr rule (fixed before any SGD run): match the norm of AdamW's first update. Adam's first step moves
# every coordinate with a nonzero gradient by lr (m/sqrt(v) = sign(g) after bias correction), a norm of
# lr * sqrt(n_grad); SGD's first step has norm lr_sgd * |g_1|. So lr_sgd = lr * sqrt(n_grad) / |g_1|.
# (sqrt(n_grad), |g_1|): Profile.sgd_first_step, medians over the profile's main RL runs of norm/update / lr and
# norm/grad at step 1.
UNUSED_SHARE = 0.09  # parameters that never receive a gradient (docs/science.md, 'Regime'), for the fallback


def sgd_lr(p) -> float:
    """SGD learning rate whose first update has the norm of AdamW's at ``p.rl_lr`` (rule in the comment above),
    two significant digits; (sqrt(n_grad), |g_1|) from ``p.sgd_first_step``. For a profile without measured
    numbers: sqrt(n_grad) from the model's parameter count (less the never-updated share) and |g_1| of the quick
    profile (tiny base)."""
    if p.sgd_first_step is not None:
        root_n, g1 = p.sgd_first_step
    else:
        n = sum(v.size for v in flat_params(init_params(p.base.model, 0)[1]).values())
        root_n, g1 = math.sqrt((1 - UNUSED_SHARE) * n), get_profile("quick").sgd_first_step[1]
    return round_lr(p.rl_lr * root_n / g1)


def edit_layer(p) -> int:
    """The edited block: the middle one (block 0 of a one-block base)."""
    return p.base.model.n_layers // 2


def reference_spec(p, seed: int, optimizer: str) -> RunSpec:
    """An unedited run: under AdamW the shared case-study run ``rl_run``; under SGD the same length at ``sgd_lr``."""
    if optimizer == "adamw":
        return rl_run(p, seed)
    return rl_run(p, seed, detailed=False, optimizer="sgd", lr=sgd_lr(p))


def edited_spec(p, seed: int, optimizer: str, kind: str) -> RunSpec:
    """A run from the base edited by ``kind`` (block ``edit_layer``, draw ``EDIT_SEED``), otherwise like the reference."""
    spec = rl_run(p, seed, detailed=False) if optimizer == "adamw" else reference_spec(p, seed, optimizer)
    return spec.replace(edit=EditConfig(kind, layer=edit_layer(p), seed=EDIT_SEED))


def _intervention_runs(p) -> list[RunSpec]:
    seeds = case_seeds(p)
    out = []
    for opt, kinds in KINDS.items():
        out += [reference_spec(p, s, opt) for s in seeds]
        out += [edited_spec(p, s, opt, k) for k in kinds for s in seeds[:EDITED_SEEDS]]
    return out


# ----------------------------------------------------------------------------------------------
# frames


def _kernels(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if k.endswith("kernel") and np.ndim(v) == 2}


def original_frame_changes(base_edit: dict, final_master: dict, record, w0_orig: dict) -> dict[str, np.ndarray]:
    """The changed masks of an edited run mapped to the original frame (claim C12), {dotted kernel name: mask}
    in the stored (in, out) kernel layout.

    ``base_edit``: the edited run's released bf16 base (float32 values); ``final_master``: its final fp32 master
    weights; ``w0_orig``: the released bf16 base of the unedited model. Permutations: the bf16 changed mask of
    the edited run moved back by ``map_mask_back`` (exact). Rotations: dW = final - base (float64), rotated
    back by ``map_update_back``, and the mask re-derived as bf16(W0_orig + dW_back) != W0_orig bitwise.
    Untouched tensors pass through both routes unchanged."""
    base_edit, final_master = _kernels(base_edit), _kernels(final_master)
    if record.kind == "rotate_vo":
        dw = {k: np.asarray(final_master[k], np.float64) - np.asarray(base_edit[k], np.float64) for k in base_edit}
        back = map_update_back(dw, record)
        return {k: changed_mask_bitwise(w0_orig[k], to_bf16(np.asarray(w0_orig[k], np.float64) + back[k])) for k in back}
    raw = {k: changed_mask_bitwise(base_edit[k], to_bf16(np.asarray(final_master[k], np.float32))) for k in base_edit}
    return map_mask_back(raw, record)


def _as_blocks(flat_masks: dict) -> dict[str, np.ndarray]:
    return block_matrices(weight_matrices(flat_masks))


def edit_record(ctx, spec: RunSpec):
    """The EditRecord of a spec's edit, redrawn from the pretrained base exactly as the trainer draws it."""
    def compute():
        base = ctx.base(spec.base)
        return apply_edit(flat_params(base.params), spec.edit, spec.base.model.n_heads)[1]
    return ctx.memo(("case.edit", spec.base, spec.edit), compute)


def run_frames(ctx, run, record, w0_orig: dict) -> dict:
    """{'raw': block masks in edited coordinates, 'back': in the original frame, 'strata_raw': ULP strata of the
    run's own (edited) base} for one edited run; for an unedited run both frames are its own mask."""

    def compute():
        base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
        kb, kf = _kernels(base), _kernels(final)
        raw = {k: changed_mask_bitwise(kb[k], to_bf16(np.asarray(kf[k], np.float32))) for k in kb}
        back = raw if record is None else original_frame_changes(base, final, record, w0_orig)
        w0 = _as_blocks({k: np.asarray(v, np.float64) for k, v in kb.items()})
        return {"raw": _as_blocks(raw), "back": _as_blocks(back), "strata_raw": {n: ulp_strata(w) for n, w in w0.items()}}

    return ctx.memo(("case.frames", run.directory.name), compute)


def region_excess(mask_a: dict, mask_b: dict, strata_a: dict, strata_b: dict, names) -> tuple[float, float]:
    """Mean over the matrices ``names`` of (J - Bernoulli level) and (J - magnitude-matched level)."""
    t = [jaccard_triplet(mask_a[n], mask_b[n], strata_a[n], strata_b[n]) for n in names]
    return float(np.mean([x[0] - x[1] for x in t])), float(np.mean([x[0] - x[2] for x in t]))


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


def _planted_control(strata: dict, edited: list[str], seed: int, moved: bool) -> str:
    """The rule on synthetic masks with a shared preferred set: three references and one 'edited' run whose
    masks in the ``edited`` matrices are shuffled (``moved``: the preferred set moved away, as the paper says a
    reparametrisation does) or kept (the preferred set stays in place)."""
    shapes = {n: s.shape for n, s in strata.items()}
    refs = _planted_masks(strata, shapes, 4, seed=seed, shared=0.8)
    run = dict(refs.pop())
    rng = np.random.default_rng(seed + 1)
    if moved:
        for n in edited:
            run[n] = rng.permutation(run[n].ravel()).reshape(run[n].shape)
    untouched = [n for n in strata if n not in edited]
    ref_e = np.mean([region_excess(refs[i], refs[j], strata, strata, edited)[0] for i in range(3) for j in range(i + 1, 3)])
    ref_u = np.mean([region_excess(refs[i], refs[j], strata, strata, untouched)[0] for i in range(3) for j in range(i + 1, 3)])
    e = [region_excess(run, r, strata, strata, edited)[0] for r in refs]
    u = [region_excess(run, r, strata, strata, untouched)[0] for r in refs]
    return decide_intervention(e, u, float(ref_e), float(ref_u))[0]


def _first_update_norm(run) -> float:
    return next((m.get("norm/update", float("nan")) for m in run.metrics() if m["step"] == 1), float("nan"))


@claim("geometry.intervention", paper=("C12",),
       title="a function-preserving edit of one block moves the mask overlap to the random level there only",
       paper_number="overlap falls to the random level in the edited layer, and only there (no numbers)",
       rule=f"RL from rotate_vo- and permute_heads-edited bases vs unedited RL of other seeds, AdamW, raw coordinates: "
            f"excess Jaccard (J - pq/(p+q-pq)) per pair as a share of the unedited pairs' excess (needs >= {MIN_EXCESS}); "
            f"both edits: edited-matrix share CI < {RANDOM_SHARE} and untouched share CI > {KEPT_SHARE} -> REPRODUCED; "
            f"either edit: edited share CI > {RANDOM_SHARE} or untouched CI < {KEPT_SHARE} -> NOT REPRODUCED; else "
            "INCONCLUSIVE. Original frame, permute_mlp and SGD (lr matched to AdamW's first-step update norm) reported",
       runs=_intervention_runs)
def intervention(ctx, runs) -> Measurement:
    """geometry.intervention (C12): mask overlap of edited against unedited RL, raw and original frames, AdamW and SGD."""
    p = ctx.profile
    seeds = case_seeds(p)
    results, used, statuses = {}, [], {}
    numbers: dict = {"sgd_lr": sgd_lr(p), "edit_layer": edit_layer(p)}
    for opt, kinds in KINDS.items():
        refs = [ctx.run(reference_spec(p, s, opt)) for s in seeds]
        used += refs
        w0_orig = _kernels(refs[0].snapshot("base", master=True))
        ref_frames = [run_frames(ctx, r, None, w0_orig) for r in refs]
        orig_strata = ref_frames[0]["strata_raw"]
        names = list(orig_strata)
        for kind in kinds:
            spec0 = edited_spec(p, seeds[0], opt, kind)
            record = edit_record(ctx, spec0)
            edited_names = [n for n in (matrix_name(t) for t in edited_tensors(record)) if n in orig_strata]
            untouched = [n for n in names if n not in edited_names]
            ref_e = [region_excess(ref_frames[i]["raw"], ref_frames[j]["raw"], orig_strata, orig_strata, edited_names)
                     for i in range(len(refs)) for j in range(i + 1, len(refs))]
            ref_u = [region_excess(ref_frames[i]["raw"], ref_frames[j]["raw"], orig_strata, orig_strata, untouched)
                     for i in range(len(refs)) for j in range(i + 1, len(refs))]
            rows = {"raw_edited": [], "raw_untouched": [], "back_edited": [], "back_untouched": []}
            same_seed_back = []
            for s in seeds[:EDITED_SEEDS]:
                run = ctx.run(edited_spec(p, s, opt, kind))
                used.append(run)
                fr = run_frames(ctx, run, record, w0_orig)
                for r_seed, rf in zip(seeds, ref_frames):
                    if r_seed == s:  # same seed: the same samples; only the mapped frame is read (a sanity number)
                        same_seed_back.append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, edited_names))
                        continue
                    rows["raw_edited"].append(region_excess(fr["raw"], rf["raw"], fr["strata_raw"], orig_strata, edited_names))
                    rows["raw_untouched"].append(region_excess(fr["raw"], rf["raw"], fr["strata_raw"], orig_strata, untouched))
                    rows["back_edited"].append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, edited_names))
                    rows["back_untouched"].append(region_excess(fr["back"], rf["raw"], orig_strata, orig_strata, untouched))
            ref_edited, ref_untouched = float(np.mean([x[0] for x in ref_e])), float(np.mean([x[0] for x in ref_u]))
            status, e_share, u_share = decide_intervention([x[0] for x in rows["raw_edited"]], [x[0] for x in rows["raw_untouched"]],
                                                           ref_edited, ref_untouched)
            back_status, be_share, _ = decide_intervention([x[0] for x in rows["back_edited"]], [x[0] for x in rows["back_untouched"]],
                                                           ref_edited, ref_untouched)
            statuses[(opt, kind)] = status
            results[(opt, kind)] = {"rows": rows, "ref_edited": ref_edited, "ref_untouched": ref_untouched,
                                    "ref_edited_magnitude": float(np.mean([x[1] for x in ref_e])),
                                    "edited": edited_names}
            key = f"{opt}/{kind}"
            numbers[key] = {
                "status_raw": status, "status_original_frame": back_status, "edited_matrices": edited_names,
                "unedited_excess_edited_matrices": ref_edited, "unedited_excess_untouched_matrices": ref_untouched,
                "raw_excess_edited": over_seeds([x[0] for x in rows["raw_edited"]]),
                "raw_excess_untouched": over_seeds([x[0] for x in rows["raw_untouched"]]),
                "original_frame_excess_edited": over_seeds([x[0] for x in rows["back_edited"]]),
                "raw_share_edited": e_share, "raw_share_untouched": u_share, "original_frame_share_edited": be_share,
                "raw_magnitude_excess_edited": over_seeds([x[1] for x in rows["raw_edited"]]),
                "original_frame_magnitude_excess_edited": over_seeds([x[1] for x in rows["back_edited"]]),
                "unedited_magnitude_excess_edited_matrices": float(np.mean([x[1] for x in ref_e])),
                "same_seed_original_frame_excess_edited": over_seeds([x[0] for x in same_seed_back]),
            }
    decisive = [statuses[("adamw", k)] for k in DECISIVE]
    if all(s == REPRODUCED for s in decisive):
        status = REPRODUCED
    elif any(s == NOT_REPRODUCED for s in decisive):
        status = NOT_REPRODUCED
    else:
        status = INCONCLUSIVE

    # controls through the same rule: planted masks on the real matrices, the rotate_vo region as "edited"
    strata0 = run_frames(ctx, ctx.run(reference_spec(p, seeds[0], "adamw")), None, {})["strata_raw"]
    region = results[("adamw", "rotate_vo")]["edited"]
    pos = _planted_control(strata0, region, 51, moved=True)
    neg = _planted_control(strata0, region, 52, moved=False)

    # first-step update norms: the SGD lr rule checked on the runs themselves
    adam1 = [_first_update_norm(ctx.run(reference_spec(p, s, "adamw"))) for s in seeds]
    sgd1 = [_first_update_norm(ctx.run(reference_spec(p, s, "sgd"))) for s in seeds]
    numbers["first_step_update_norm_ratio_sgd_over_adamw"] = over_seeds(np.asarray(sgd1) / np.asarray(adam1))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    keys = list(results)
    x = np.arange(len(keys))
    for ax, region_name in zip(axes, ("edited", "untouched")):
        for off, frame, label in ((-0.2, "raw", "raw coordinates"), (0.2, "back", "mapped back to the original frame")):
            vals = [over_seeds([v[0] for v in results[k]["rows"][f"{frame}_{region_name}"]]) for k in keys]
            ax.bar(x + off, [v.mean for v in vals], 0.4, label=label,
                   yerr=[[v.mean - v.low for v in vals], [v.high - v.mean for v in vals]], capsize=2)
        ref = [results[k][f"ref_{region_name}"] for k in keys]
        ax.scatter(x, ref, marker="_", s=400, color="k", zorder=3, label="unedited vs unedited (same matrices)")
        ax.axhline(0, color="gray", lw=0.8, ls=":")
        ax.set_xticks(x, [f"{o}\n{k}" for o, k in keys], fontsize=7)
        ax.set_xlabel("optimizer and edit")
        ax.set_title(f"C12: {region_name} matrices (block {edit_layer(p)} edited)", fontsize=9)
    axes[0].set_ylabel("excess Jaccard J - pq/(p+q-pq) (dimensionless; 0 = random level)", fontsize=8)
    axes[0].legend(fontsize=6)
    a = numbers["adamw/rotate_vo"]
    h = numbers["adamw/permute_heads"]
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
        figures=[fig], runs=used,
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
