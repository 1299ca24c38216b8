"""Sparsity of an update and the precision readout behind it (Gate III, C1, C2, C6, C9): the share of weights
unchanged in the released bf16 export and in the fp32 master, the probes against bitwise truth, the half-ULP
rule against measured export changes, and sparsity predicted from each weight's fp32 drift."""

from __future__ import annotations

import numpy as np

from theory.precision import (
    changed_mask_absolute,
    changed_mask_bitwise,
    changed_mask_fp32,
    changed_mask_relative,
    checkpoint_sparsity,
    half_ulp_rule,
    is_visible,
    predict_sparsity_from_drift,
    to_bf16,
)
from toy_models.storage import stored_view
from verify.measures.weights import as_f64


def bf16_sparsity(run) -> float:
    """Share of parameters unchanged between the base and the final snapshot in the released form (bf16
    export of fp32_master runs), with the paper's relative probe (equal to bf16 bit equality, claim C2)."""
    return checkpoint_sparsity(run.snapshot("base"), run.snapshot("final"), probe="relative")["overall"]


def fp32_sparsity(run) -> float:
    """Share of parameters whose stored float32 bits did not change (fp32 storage: the fp32 master weights
    of fp32_master runs compared exactly, never through a bf16 rounding)."""
    return checkpoint_sparsity(run.snapshot("base", master=True), run.snapshot("final", master=True),
                               probe=changed_mask_fp32)["overall"]


def eligible_sparsity(run) -> float:
    """bf16-export sparsity over the parameters that received a gradient (structurally untouched ones apart)."""
    return run.regime.get("sparsity_bf16_eligible", float("nan"))


def untouched_share(run) -> float:
    """Share of the parameters that never received a gradient (unused embedding and position rows)."""
    return run.regime.get("untouched_share", float("nan"))


def probe_counts(runs, eta: float) -> dict[str, int]:
    """Mismatches of the relative probe against bitwise truth, and absolute-probe errors, over all tensors."""
    mism = fp = fn = n = 0
    for r in runs:
        b, f = r.snapshot("base"), r.snapshot("final")
        bm, fm = r.snapshot("base", master=True), r.snapshot("final", master=True)
        for k in b:
            truth = changed_mask_bitwise(b[k], f[k])
            mism += int(np.count_nonzero(changed_mask_relative(b[k], f[k], eta=eta) != truth))
            absolute = changed_mask_absolute(np.asarray(bm[k], np.float32), np.asarray(fm[k], np.float32), tol=1e-5)
            fp += int(np.count_nonzero(absolute & ~truth))
            fn += int(np.count_nonzero(~absolute & truth))
            n += truth.size
    return {"relative_mismatch": mism, "absolute_false_changed": fp, "absolute_false_equal": fn, "n": n}


def visibility_agreement(runs, ulp_scale: float = 1.0) -> tuple[float, float]:
    """(agreement of the half-ULP rule with measured export changes, share predicted visible exactly)."""
    agree = total = vis = 0
    for r in runs:
        b = as_f64(r.snapshot("base", master=True))
        f = as_f64(r.snapshot("final", master=True))
        for k in b:
            w0 = np.asarray(to_bf16(b[k]), np.float64)
            d = f[k] - b[k]
            measured = changed_mask_bitwise(w0, to_bf16(f[k]))
            predicted = half_ulp_rule(w0 * ulp_scale, d)
            agree += int(np.count_nonzero(predicted == measured))
            vis += int(np.count_nonzero(is_visible(w0, d)))
            total += w0.size
    return agree / total, vis / total


def measured_and_predicted(run) -> tuple[float, float, float]:
    """(measured bf16-export sparsity, sparsity predicted from the per-weight fp32 drift by the half-ULP rule,
    sparsity predicted from lr, steps and sign consistency alone) of an fp32_master run."""
    base, final = as_f64(run.snapshot("base", master=True)), as_f64(run.snapshot("final", master=True))
    n = sum(v.size for v in base.values())
    changed = sum(int(np.count_nonzero(changed_mask_bitwise(base[k], to_bf16(final[k])))) for k in base)
    pred = sum(v.size * predict_sparsity_from_drift(base[k], final[k] - base[k]) for k, v in base.items()) / n
    return 1.0 - changed / n, pred, run.regime["predicted_sparsity_from_regime"]


def predicted_with(run, drift_run) -> float:
    """Sparsity of ``run`` predicted with the drifts of ``drift_run`` (the mismatched negative control)."""
    base = as_f64(run.snapshot("base", master=True))
    b2, f2 = as_f64(drift_run.snapshot("base", master=True)), as_f64(drift_run.snapshot("final", master=True))
    n = sum(v.size for v in base.values())
    return sum(v.size * predict_sparsity_from_drift(base[k], f2[k] - b2[k]) for k, v in base.items()) / n


def export_sparsity(run, mode: str) -> float:
    """Share of parameters unchanged between the base and the final snapshot of an fp32-master run when its master
    weights are released under storage ``mode`` ('fp32_master': the bf16 export; 'fp16_master': the fp16 export,
    compared by value, never with the bf16 probe): the same training read through two release formats."""
    base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
    return checkpoint_sparsity(stored_view(base, mode), stored_view(final, mode), probe="bitwise")["overall"]
