"""Changed masks of runs from function-preserving edits of the base (C12), in two frames:

- raw coordinates: the edited run's changed mask as it is;
- original frame: the edited run's change mapped back through the inverse edit. Permutations map masks
  exactly (``map_mask_back``). A rotation mixes coordinates, so its fp32 master update is rotated back
  (``map_update_back``) and the mask re-derived as bf16(W0_orig + dW_back) against W0_orig, W0_orig being
  the released bf16 base of the unedited runs.

Overlap between two runs in a set of matrices is the mean excess Jaccard over chance (``region_excess``).
"""

from __future__ import annotations

import numpy as np

from theory.precision import changed_mask_bitwise, to_bf16
from toy_models.finetune import RunSpec
from toy_models.interventions import apply_edit, map_mask_back, map_update_back
from toy_models.transformer import flat_params, weight_matrices
from verify.measures.jaccard import jaccard_triplet
from verify.measures.masks import ulp_strata
from verify.measures.weights import block_matrices


def kernels(flat: dict) -> dict:
    """The 2-D kernels of a flat parameter dict (dotted names, stored (in, out) layout)."""
    return {k: v for k, v in flat.items() if k.endswith("kernel") and np.ndim(v) == 2}


def original_frame_changes(base_edit: dict, final_master: dict, record, w0_orig: dict) -> dict[str, np.ndarray]:
    """The changed masks of an edited run mapped to the original frame (claim C12), {dotted kernel name: mask}
    in the stored (in, out) kernel layout.

    ``base_edit``: the edited run's released bf16 base (float32 values); ``final_master``: its final fp32 master
    weights; ``w0_orig``: the released bf16 base of the unedited model. Permutations: the bf16 changed mask of
    the edited run moved back by ``map_mask_back`` (exact). Rotations: dW = final - base (float64), rotated
    back by ``map_update_back``, and the mask re-derived as bf16(W0_orig + dW_back) != W0_orig bitwise.
    Untouched tensors pass through both routes unchanged."""
    base_edit, final_master = kernels(base_edit), kernels(final_master)
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

    return ctx.memo(("edit_record", spec.base, spec.edit), compute)


def run_frames(ctx, run, record, w0_orig: dict) -> dict:
    """{'raw': block masks in edited coordinates, 'back': in the original frame, 'strata_raw': ULP strata of the
    run's own (edited) base} for one edited run; for an unedited run both frames are its own mask."""

    def compute():
        base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
        kb, kf = kernels(base), kernels(final)
        raw = {k: changed_mask_bitwise(kb[k], to_bf16(np.asarray(kf[k], np.float32))) for k in kb}
        back = raw if record is None else original_frame_changes(base, final, record, w0_orig)
        w0 = _as_blocks({k: np.asarray(v, np.float64) for k, v in kb.items()})
        return {"raw": _as_blocks(raw), "back": _as_blocks(back), "strata_raw": {n: ulp_strata(w) for n, w in w0.items()}}

    return ctx.memo(("frames", run.directory.name), compute)


def region_excess(mask_a: dict, mask_b: dict, strata_a: dict, strata_b: dict, names) -> tuple[float, float]:
    """Mean over the matrices ``names`` of (J - Bernoulli level) and (J - magnitude-matched level)."""
    t = [jaccard_triplet(mask_a[n], mask_b[n], strata_a[n], strata_b[n]) for n in names]
    return float(np.mean([x[0] - x[1] for x in t])), float(np.mean([x[0] - x[2] for x in t]))
