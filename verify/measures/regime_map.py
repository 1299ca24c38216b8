"""Every regime-map metric of one finished run (regime.phase, regime.width, regime.optimizer): bf16 sparsity,
the principal and low-magnitude overlap of its changed mask, principal energy, spectral drift, the Fisher
curvature of its update, and its regime numbers. Continuous quantities on the fp32 master weights, masks on
the bf16 export, block matrices only."""

from __future__ import annotations

from verify.measures.curvature import update_curvature
from verify.measures.masks import base_masks, changed, in_mask_share
from verify.measures.spectra import drift, energy_ratio
from verify.measures.weights import block_pairs

METRICS = {  # name: (axis label, sign of the paper's RL-minus-SFT effect)
    "sparsity": ("bf16 update sparsity (share unchanged)", +1),
    "principal_overlap": ("principal-mask share of changed - alpha", -1),
    "lowmag_overlap": ("low-magnitude share of changed - alpha", +1),
    "energy_ratio": ("principal energy / isotropic level", -1),
    "nss": ("normalised spectral shift", -1),
    "angle": ("largest top-k principal angle (degrees)", -1),
    "curvature": ("Fisher curvature of the update direction", -1),
}

def run_metrics(ctx, run) -> dict:
    """{sparsity, sparsity_eligible, principal_overlap, lowmag_overlap, energy_ratio, nss, angle, curvature,
    drift_ratio, step_ratio, gain} of one run (memoised)."""

    def compute():
        r = run.regime
        prin, low, _ = in_mask_share(changed(ctx, run), base_masks(ctx, run))
        nss, angle = drift(ctx, run)
        return {"sparsity": r["sparsity_bf16_all"], "sparsity_eligible": r["sparsity_bf16_eligible"],
                "principal_overlap": prin, "lowmag_overlap": low,
                "energy_ratio": energy_ratio(block_pairs(ctx, run, master=True)),
                "nss": nss, "angle": angle, "curvature": update_curvature(ctx, run),
                "drift_ratio": r["drift_ratio"], "step_ratio": r["step_ratio"], "gain": run.summary["gain"]}

    return ctx.memo(("run_metrics", run.directory.name), compute)
