"""Whole-model numbers of a ``pair`` / ``pairs`` analysis (pair.json, pairs.json): totals, pooled nulls, sweeps.

Pooling. A ratio statistic pools over tensors by adding its counts and its draws (``theory.null.RatioNull``):
the whole-model overlap with the principal mask is sum |C & R| / sum |C| over matrices, its null the same
ratio of expected counts, its range from the summed draws (tensors are drawn independently). Stripe
statistics pool as means over tensors. Per module kind the same pooling runs over that kind's tensors.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from verify.realckpt.analyze import PairResult, Result
from verify.realckpt.layout import KINDS
from verify.realckpt.options import MIN_MATCHED
from verify.realckpt.spectra import isotropic_energy_range

OVERLAPS = (("principal", "principal_overlap"), ("low_magnitude", "low_mag_overlap"))


def _sum(items):
    items = [i for i in items if i is not None]
    if not items:
        return None
    out = items[0]
    for i in items[1:]:
        out = out + i
    return out


def _median(values, weights=None) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights or [1] * len(values)) if v is not None and math.isfinite(v)]
    if not pairs:
        return None
    pairs.sort()
    cum = np.cumsum([w for _, w in pairs])
    return float(pairs[int(np.searchsorted(cum, cum[-1] / 2))][0])


def _pooled_nulls(records: list[dict], nulls: list[dict], level: float) -> dict:
    out = {}
    changed = _sum(n.get("changed") for n in nulls)
    if changed is not None:
        out["changed_share"] = changed.summary(level)
    fp16 = _sum(n.get("fp16") for n in nulls)
    if fp16 is not None:
        s = fp16.summary(level)
        out["fp16_sparsity_predicted"] = {"sparsity": 1 - s["null"], "low": 1 - s["null_high"], "high": 1 - s["null_low"],
                                          "measured": 1 - s["observed"] if math.isfinite(s["observed"]) else None}
    for region, key in OVERLAPS:
        pooled = _sum(n.get(region) for n, r in zip(nulls, records) if r.get(key) is not None)
        if pooled is not None:
            out[key] = pooled.summary(level)
    return out


def _energy_summary(records: list[dict], sweep, level: float) -> list[dict]:
    out = []
    for req in sweep:
        ratios, above, below, n = [], 0, 0, 0
        for r in records:
            e = r.get(f"energy_k{req}")
            if e is None:
                continue
            m, nn = (r["shape"][1], r["shape"][0]) if r["transposed"] else tuple(r["shape"])
            ke = r["sweep_k"][list(sweep).index(req)]
            lo, hi = isotropic_energy_range(m, nn, ke, level)
            n += 1
            ratios.append(r[f"energy_ratio_k{req}"])
            above += e > hi
            below += e < lo
        out.append({"k": req, "matrices": n, "median_ratio": _median(ratios), "above_isotropic": int(above),
                    "below_isotropic": int(below)})
    return out


def _matrix_summary(records: list[dict]) -> dict:
    mats = [r for r in records if r.get("nss") is not None]
    resid = [r["spectral_residual"] / r["spectral_residual_isotropic"] for r in mats if r.get("spectral_residual") is not None]
    top1 = [r["dw_top1_share"] / r["dw_top1_isotropic"] for r in mats if r.get("dw_top1_share") is not None]
    return {
        "matrices": len(mats),
        "angles_determined": sum(bool(r.get("angle_determined")) for r in mats),
        "median_max_angle_deg": _median([r["max_angle_deg"] for r in mats]),
        "median_spectral_residual_over_isotropic": _median(resid),
        "median_dw_top1_share": _median([r.get("dw_top1_share") for r in mats]),
        "median_dw_top1_over_isotropic": _median(top1),
        "median_dw_rank90_share": _median([r["dw_rank90"] / min(r["shape"]) for r in mats if r.get("dw_rank90")]),
        "intruders": sum(r.get("intruders") or 0 for r in mats),
    }


def pair_summary(pr: PairResult) -> dict:
    """The pair.json object: totals, matching, pooled nulls, sweep and structure summaries, per-tensor records."""
    recs, opts = pr.records, pr.options
    level = opts.level
    params = sum(r["size"] for r in recs)

    def share(key):
        vals = [r.get(key) for r in recs]
        return 1 - sum(vals) / params if params and all(v is not None for v in vals) else None

    rounded: dict[str, list[str]] = {"base": [], "tuned": []}
    for r in recs:
        for side in filter(None, r["rounded_to_bf16"].split("+")):
            rounded[side].append(r["name"])
    fp16 = [r.get("sparsity_fp16") for r in recs]
    fp16_share = (1 - sum((1 - f) * r["size"] for f, r in zip(fp16, recs)) / params
                  if params and all(f is not None for f in fp16) else None)
    out = {
        "base": pr.base, "tuned": pr.tuned, "params": params,
        "sparsity_bf16": share("changed_bf16"), "sparsity_bitwise": share("changed_bitwise"), "sparsity_abs": share("changed_abs"),
        "sparsity_fp16": fp16_share,
        "abs_only": sum(r.get("abs_only") or 0 for r in recs), "rel_only": sum(r.get("rel_only") or 0 for r in recs),
        "rel_vs_bitwise": sum(r["rel_vs_bitwise"] for r in recs),
        "identical": all(r["changed_bitwise"] == 0 for r in recs),
        "matched_share": pr.matching.matched_share, "partial": pr.matching.matched_share < MIN_MATCHED,
        "rounded_from_f32": rounded,
        "missing": pr.matching.missing, "extra": pr.matching.extra,
        "mismatched": pr.matching.mismatched, "skipped": pr.matching.skipped,
        "options": asdict(opts), "seconds": round(pr.seconds, 1),
    }
    if not opts.sparsity_only:
        out["null"] = _pooled_nulls(recs, pr.nulls, level)
        out["null"]["by_kind"] = {kind: _pooled_nulls([r for r in recs if r["kind"] == kind],
                                                      [n for n, r in zip(pr.nulls, recs) if r["kind"] == kind], level)
                                  for kind in KINDS if any(r["kind"] == kind for r in recs)}
        out["drift_half_ulps"] = _median([r.get("drift_half_ulps") for r in recs], [r["size"] for r in recs])
        out["energy_sweep"] = _energy_summary(recs, opts.sweep, level)
        out["structure"] = _matrix_summary(recs)
    out["tensors"] = recs
    return out


def _trend(shares: list[float], level: float) -> dict | None:
    """Least-squares slope of the changed share against checkpoint index, with its ``level`` interval (t law)."""
    if len(shares) < 3:
        return None
    import scipy.stats  # a heavy import, needed for pairs only

    x = np.arange(len(shares), dtype=float)
    fit = scipy.stats.linregress(x, shares)
    t = scipy.stats.t.ppf((1 + level) / 2, len(shares) - 2)
    return {"slope": float(fit.slope), "low": float(fit.slope - t * fit.stderr), "high": float(fit.slope + t * fit.stderr),
            "p_value": float(fit.pvalue)}


def pairs_summary(res: Result, summaries: list[dict]) -> dict:
    """The pairs.json object beyond the per-tensor records: pooled Jaccard per run pair and its null, stripes
    per module kind, changes between consecutive checkpoints with their trend, and the first run's changed set
    kept in the last (C4). Pooling runs over the tensors every run holds."""
    R = len(res.pairs)
    level = res.options.level
    every = [(c, n) for c, n in zip(res.c3, res.c3_nulls) if len(c["runs"]) == R]
    params = sum(c["size"] for c, _ in every)
    steps = [1 - summaries[0]["sparsity_bf16"]] if summaries and summaries[0]["sparsity_bf16"] is not None else []
    for i in range(R - 1):
        steps.append(sum(c["consecutive_changed"][i] for c, _ in every) / params if params else float("nan"))
    out = {"base": res.base, "tuned": [p.tuned for p in res.pairs], "sparsity_bf16": [s["sparsity_bf16"] for s in summaries],
           "tensors_in_every_run": len(every),
           "consecutive": {"changed_share": steps, "trend": _trend(steps, level)}}
    if every and every[0][1]:
        nulls = [n for _, n in every]
        kept = _sum(n["kept"] for n in nulls)
        out["consecutive"]["kept_share"] = kept.summary(level)
        jac = {}
        for i in range(R):
            for j in range(i + 1, R):
                jac[f"{i + 1}-{j + 1}"] = _sum(n["jaccard"][(i, j)] for n in nulls).summary(level)
        out["jaccard"] = jac
        from theory.null import ValueNull

        out["stripes"] = {}
        for kind in KINDS:
            group = [n for c, n in every if c["kind"] == kind and n["stripes"]]
            if group:
                out["stripes"][kind] = {axis: ValueNull.mean([n["stripes"][axis] for n in group]).summary(level) for axis in ("rows", "cols")}
    else:
        first = sum(c["densities"][0] * c["size"] for c, _ in every)
        kept = sum((c["kept_share"] or 0) * c["densities"][0] * c["size"] for c, _ in every)
        out["consecutive"]["kept_share"] = {"observed": kept / first if first else None}
    return out
