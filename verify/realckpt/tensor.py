"""Everything the analyzer measures on one tensor name, across the base and every tuned checkpoint holding it.

One call (``analyze_tensor``) runs in a worker process and returns small results (records, null counts, a
consensus grid); the tensors themselves never leave it. Passes over the data (row chunks, ``stream.Source``):

1. base and tuned chunks together: finiteness, bf16 rounding, the change probes (relative, bitwise, absolute;
   an fp16 export's changes when a side is not bf16), packed changed masks, magnitude histograms for the null,
   changes between consecutive checkpoints, and for matrices the float64 Gram G0 = T0^T T0 with, per tuned
   checkpoint, C = T0^T dT and G_dW = dT^T dT (``spectra`` gets every spectrum and energy from them);
2. matrices: B = T V_k for the base and each tuned checkpoint (the other side's top-k vectors);
3. matrices: the principal and low-magnitude masks written (``stream.Selector``) with their magnitude
   histograms, overlaps with each changed mask and, for several runs, row / column tables for stripes.

The null (``theory.null``) is fitted per tuned checkpoint from the histograms, with draws from
``null_rng(name, seed + run index)``: a direct call of ``theory.null.magnitude_null`` on the same arrays with
that generator gives the same numbers. Sparsity-only mode runs ``sparsity`` instead.
"""

from __future__ import annotations

import math
import time
import jax
import numpy as np

from theory import null as NL
from theory import spectral as S
from verify.realckpt import spectra as SP
from verify.realckpt import linalg as LA
from verify.realckpt import select as Sel
from verify.realckpt import stream as St
from verify.realckpt.job import Job, TensorResult
from verify.realckpt.layout import TensorInfo, is_kernel, parse_name
from verify.realckpt.options import INTRUDER_COS, Options
from verify.realckpt.changed import TIGHT_ETA, relative_changed

NO_STRIPES = ("embed", "head")
_MAX_GRID = 512  # consensus maps are block-averaged to at most this many cells per side


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class _Run:
    """Per tuned checkpoint state of one tensor name."""

    def __init__(self, index: int, info: TensorInfo, N: int, r: int):
        self.index, self.info = index, info
        self.counts = dict(changed_bf16=0, changed_bitwise=0, rel_vs_bitwise=0, changed_abs=0, abs_only=0, rel_only=0)
        self.fp16 = 0
        self.packed = np.zeros((N + 7) // 8, np.uint8)
        self.hist = np.zeros(NL.MAGNITUDES, np.int64)
        self.consecutive = 0
        self.C = np.zeros((r, r)) if r else None
        self.GD = np.zeros((r, r)) if r else None


def _probes(run: _Run, b0, b1, mag0, D, f0, x1, opts: Options, start: int):
    """Change probes of one chunk (flat stored order from ``start``); ``D`` = stored tuned - base, float64."""
    bit = St.changed_bits(b0, b1)
    rel = bit if opts.eta < TIGHT_ETA else relative_changed(b0, b1, opts.eta)
    if rel is not bit:
        run.counts["rel_vs_bitwise"] += int(np.count_nonzero(rel != bit))
    c = run.counts
    c["changed_bf16"] += int(np.count_nonzero(rel))
    c["changed_bitwise"] += int(np.count_nonzero(bit))
    ab = np.abs(D) > opts.tol
    c["changed_abs"] += int(np.count_nonzero(ab))
    c["abs_only"] += int(np.count_nonzero(ab & ~rel))
    c["rel_only"] += int(np.count_nonzero(rel & ~ab))
    run.hist += np.bincount(mag0.reshape(-1)[rel.reshape(-1)], minlength=NL.MAGNITUDES)
    if f0 is not None:
        run.fp16 += int(np.count_nonzero(f0 != St.to_fp16(x1)))
    St.pack_into(run.packed, start, rel)


def _add_products(run: _Run, G0, X0: np.ndarray, D: np.ndarray, first: bool) -> None:
    """G0 += X0^T X0 (once per chunk), C += X0^T D, G_dW += D^T D for one tuned checkpoint."""
    if first:
        LA.add_gram(G0, X0)
    run.C += X0.T @ D
    LA.add_gram(run.GD, D)


def analyze_tensor(job: Job) -> TensorResult:
    """All metrics of one tensor name (module docstring); raises ``layout.BadInput`` naming the tensor and file."""
    t_start = time.perf_counter()
    opts, name = job.opts, job.name
    layer, kind = parse_name(name)
    info0 = job.base
    m, n = St.as_rows(info0.shape)
    matrix = len(info0.shape) == 2 and min(m, n) >= 1
    wide = matrix and m < n
    r = min(m, n) if matrix else 0
    N = info0.size
    src0 = St.Source(info0, opts.chunk, whole=wide)
    present = [(j, info) for j, info in enumerate(job.tuned) if info is not None]
    srcs = [St.Source(info, opts.chunk, whole=wide) for _, info in present]
    runs = [_Run(j, info, N, r) for j, info in present]
    fp16_measured = info0.dtype != "BF16" or any(info.dtype != "BF16" for _, info in present)
    hist0 = np.zeros(NL.MAGNITUDES, np.int64)
    G0 = np.zeros((r, r)) if matrix else None
    low_sel = Sel.Selector(m, n, S.mask_count(N, opts.alpha), is_kernel(name)) if matrix else None
    with St.single_blas_thread():
        for r0, r1 in src0.ranges():  # pass 1
            x0 = src0.rows(r0, r1)
            b0 = St.bf16_bits(x0, name, info0.file)
            mag0 = b0 & np.uint16(0x7FFF)
            hist0 += np.bincount(mag0.reshape(-1), minlength=NL.MAGNITUDES)
            if matrix and x0.dtype != St.BF16:
                low_sel.add_high(~Sel.magnitude_key(x0))
            X0 = St.as_float64(x0)
            f0 = St.to_fp16(x0) if fp16_measured else None
            prev = None
            for run, src in zip(runs, srcs):
                x1 = src.rows(r0, r1)
                b1 = St.bf16_bits(x1, name, run.info.file)
                D = St.as_float64(x1) - X0
                _probes(run, b0, b1, mag0, D, f0, x1, opts, r0 * n)
                if prev is not None:
                    run.consecutive += int(np.count_nonzero(St.changed_bits(prev, b1)))
                prev = b1  # a view of this source's buffer: the next read of another source leaves it alone
                if matrix and not wide:
                    _add_products(run, G0, X0, D, run is runs[0])
        if wide:
            blocks = [St.tall_blocks(s.data, opts.chunk) for s in srcs]
            for (_, _, X0), *ones in zip(St.tall_blocks(src0.data, opts.chunk), *blocks):
                for i, (run, (_, _, X1)) in enumerate(zip(runs, ones)):
                    _add_products(run, G0, X0, X1 - X0, i == 0)
    res = TensorResult(name)
    base_rec = dict(name=name, shape=list(info0.shape), layer=layer, kind=kind, transposed=is_kernel(name) and len(info0.shape) == 2, size=N)
    for run in runs:
        i1 = run.info
        rounded = [side for side, i in (("base", info0), ("tuned", i1)) if i.dtype != "BF16"]
        c = run.counts
        rec = dict(base_rec, dtype=info0.dtype if info0.dtype == i1.dtype else f"{info0.dtype}/{i1.dtype}",
                   rounded_to_bf16="+".join(rounded), **c,
                   sparsity_bf16=1 - c["changed_bf16"] / N, sparsity_bitwise=1 - c["changed_bitwise"] / N,
                   sparsity_abs=1 - c["changed_abs"] / N,
                   sparsity_fp16=1 - run.fp16 / N if fp16_measured else None)
        res.records[run.index] = rec
    _spectra_and_null(job, res, runs, srcs, src0, hist0, G0, low_sel, (m, n), matrix, fp16_measured)
    if len(runs) >= 2:
        runs_record(job, res, [r.packed for r in runs], [r.consecutive for r in runs[1:]])
    seconds = round(time.perf_counter() - t_start, 3)
    for rec in res.records.values():
        rec["seconds"] = seconds
    return res


class _Lines:
    """Row and column tables (lines x cells) of the base and observed line counts per run, for stripes (pass 3)."""

    def __init__(self, fits, hist0, runs, shape):
        self.cells = NL.run_cells(fits, hist0)
        G = len(self.cells.n)
        m, n = shape
        self.rows = np.zeros((m, G), np.int64)
        self.cols = np.zeros((n, G), np.int64)
        self.row_counts = np.zeros((len(runs), m), np.int64)
        self.col_counts = np.zeros((len(runs), n), np.int64)
        self.runs, self.n, self.G = runs, n, G

    def add(self, r0: int, r1: int, mag0: np.ndarray) -> None:
        cell = self.cells.lut[mag0]  # (rows, n)
        rows = r1 - r0
        self.rows[r0:r1] = np.bincount((np.arange(rows)[:, None] * self.G + cell).ravel(), minlength=rows * self.G).reshape(rows, self.G)
        self.cols += np.bincount((np.arange(self.n)[None, :] * self.G + cell).ravel(), minlength=self.n * self.G).reshape(self.n, self.G)
        for i, run in enumerate(self.runs):
            ch = St.unpack(run.packed, r0 * self.n, r1 * self.n).reshape(rows, self.n)
            self.row_counts[i, r0:r1] = ch.sum(axis=1)
            self.col_counts[i] += ch.sum(axis=0)


def _spectra_and_null(job, res, runs, srcs, src0, hist0, G0, low_sel, shape, matrix, fp16_measured) -> None:
    opts, name = job.opts, job.name
    m, n = shape
    transposed = is_kernel(name) and matrix
    fits = [NL.fit_drift(hist0, run.hist) for run in runs]
    lines = _Lines(fits, hist0, runs, shape) if matrix and len(runs) >= 2 and parse_name(name)[1] not in NO_STRIPES else None
    if matrix:
        r = min(m, n)
        k, K = min(opts.rank, r), min(opts.top, r)
        with St.single_blas_thread():
            G0s = LA.symmetric(G0)
            lam0, Z0 = LA.eigen(G0s, K)
            s0 = LA.singular_values(lam0)
            tuned = []
            for run in runs:
                GDs = LA.symmetric(run.GD)
                lam1, Z1 = LA.eigen(G0s + run.C + run.C.T + GDs, k)
                lamD, _ = LA.eigen(GDs, 0)
                tuned.append((LA.singular_values(lam1), Z1, LA.singular_values(lamD)))
            factors = _other_side(src0, srcs, Z0[:, :k], [t[1] for t in tuned], opts.chunk, m >= n)  # pass 2
        U0, V0 = factors[0]
        sel = Sel.Selector(m, n, S.mask_count(m * n, opts.alpha), transposed)
        keys = Sel.principal_keys(U0, s0[:k], V0, opts.chunk)
        ranges = list(src0.ranges())
        with St.single_blas_thread():
            for r0, r1 in ranges:
                sel.add_high(keys(r0, r1))
            for r0, r1 in ranges:
                sel.add_low(keys(r0, r1))
        if _is_bf16(src0):  # the keys are the complemented bf16 magnitudes: their histogram is the base's
            low_sel.set_high(np.concatenate([np.zeros(65536 - NL.MAGNITUDES, np.int64), hist0[::-1]]), 0xFFFF)
        else:
            for r0, r1 in ranges:
                low_sel.add_low(~Sel.magnitude_key(src0.rows(r0, r1)))
        with St.single_blas_thread():
            for r0, r1 in ranges:  # pass 3
                x0 = src0.rows(r0, r1)
                mag0 = St.bf16_bits(x0, name, src0.info.file) & np.uint16(0x7FFF)
                sel.write(r0, keys(r0, r1), mag0)
                low_sel.write(r0, ~Sel.magnitude_key(x0), mag0)
                if lines is not None:
                    lines.add(r0, r1, mag0)
        principal, low = sel.finish(), low_sel.finish()
    for i, run in enumerate(runs):
        rec = res.records[run.index]
        rec.update(dict.fromkeys(MATRIX_KEYS))
        regions = {}
        if matrix:
            o_p, o_l = St.popcount(run.packed & principal), St.popcount(run.packed & low)
            regions = {"principal": (sel.value_hist, o_p), "low_magnitude": (low_sel.value_hist, o_l)}
            s1, Z1, sD = tuned[i]
            U1, V1 = factors[i + 1]
            rec.update(_matrix_record(opts, m, n, k, s0, Z0, U0, V0, s1, Z1, U1, V1, sD, run, transposed))
            changed = rec["changed_bf16"]
            rec["principal_overlap"] = o_p / changed if changed else None
            rec["low_mag_overlap"] = o_l / changed if changed else None
        mn = NL.magnitude_null_from_counts(hist0, run.hist, regions, fp16_changed=run.fp16 if fp16_measured else None,
                                           draws=opts.draws, rng=NL.null_rng(name, opts.seed + run.index))
        res.nulls[run.index] = {"changed": mn.changed_share, "fp16": mn.fp16_share, **mn.overlaps}
        rec.update(_null_columns(mn, opts.level, rec))
    if len(runs) >= 2:
        res.c3_nulls = _runs_null(job, runs, fits, hist0, lines, transposed)


def _runs_null(job, runs, fits, hist0, lines, transposed) -> dict:
    """Jaccard of every run pair, row / column stripes and the early set kept to the end, against the null."""
    opts = job.opts
    cells = lines.cells if lines is not None else NL.run_cells(fits, hist0)
    pairs = {(i, j): (St.popcount(runs[i].packed & runs[j].packed), St.popcount(runs[i].packed | runs[j].packed))
             for i in range(len(runs)) for j in range(i + 1, len(runs))}
    tables = {}
    if lines is not None:
        m, n = lines.rows.shape[0], lines.n
        tables = {"rows": (lines.rows, lines.row_counts, n), "cols": (lines.cols, lines.col_counts, m)}
    rng = NL.null_rng(job.name + "#runs", opts.seed)
    rn = NL.runs_null_from_counts(cells, pairs, tables, draws=opts.draws, rng=rng)
    stripes = dict(rn.stripes)
    if transposed and stripes:  # stored rows are the analysed (out, in) matrix's columns
        stripes = {"rows": stripes["cols"], "cols": stripes["rows"]}
    kept = NL.share_null(fits[-1].p_bf16, runs[0].hist, St.popcount(runs[0].packed & runs[-1].packed),
                         draws=opts.draws, rng=rng)
    return {"jaccard": rn.jaccard, "mean_jaccard": rn.mean_jaccard, "stripes": stripes, "kept": kept}


def _is_bf16(src) -> bool:
    return src.info.dtype == "BF16"


def _other_side(src0, srcs, Z0k, Z1s, chunk, tall) -> list[tuple[np.ndarray, np.ndarray]]:
    """(U_k, V_k) in the stored orientation for the base and each tuned matrix: B = T Z (pass 2), QR."""
    out = []
    for src, Z in zip([src0, *srcs], [Z0k, *Z1s]):
        if src.data is not None:
            B = np.concatenate([X @ Z for _, _, X in St.tall_blocks(src.data, chunk)])
        else:
            B = np.empty((src.shape[0], Z.shape[1]))
            for r0, r1 in src.ranges():
                B[r0:r1] = St.as_float64(src.rows(r0, r1)) @ Z
        Q = LA.orthonormal(B)  # one B at a time: the vocabulary-sized ones are the largest arrays held
        out.append((Q, Z) if tall else (Z, Q))
    return out


MATRIX_KEYS = ("k", "nss", "max_angle_deg", "max_angle_u_deg", "max_angle_v_deg", "gap_at_k", "gap_at_k_rel", "angle_determined",
               "principal_overlap", "low_mag_overlap", "alpha", "principal_energy", "energy_isotropic",
               "stable_rank_base", "stable_rank_tuned", "rel_update", "spectral_residual", "spectral_residual_isotropic",
               "dw_norm2", "dw_top1_share", "dw_top1_isotropic", "dw_topk_share", "dw_rank90", "dw_stable_rank", "intruders")
"""Record keys that only matrices fill (None for other tensors); the sweep adds energy_k*, energy_iso_k*, energy_ratio_k*."""


def _matrix_record(opts, m, n, k, s0, Z0, U0, V0, s1, Z1, U1, V1, sD, run, transposed) -> dict:
    d2 = float(np.trace(run.GD))  # the diagonal is filled
    w2 = float(np.sum(s0 * s0))
    with jax.enable_x64(True):
        ang_l = np.degrees(np.asarray(S.principal_angles_from_factors(*SP.reduced_factors(U0, U1))))
        ang_r = np.degrees(np.asarray(S.principal_angles_from_factors(*SP.reduced_factors(V0, V1))))
        nss = float(S.nss_from_singular_values(s0, s1))
        gap = float(S.spectral_gap_from_singular_values(s0, k))
        sr0 = float(S.stable_rank_from_singular_values(s0))
        sr1 = float(S.stable_rank_from_singular_values(s1))
    ang_u, ang_v = (ang_r, ang_l) if transposed else (ang_l, ang_r)  # U = output (row) side of (out, in)
    sweep = SP.energy_sweep(Z0, s0, run.C, d2, (*opts.sweep, k), m, n)
    at_k = sweep[-1]
    dw = SP.dw_structure(sD, k, m, n)
    resid, resid_iso = SP.spectral_residual(s0, s1, d2, m, n)
    out = dict(k=k, nss=_f(nss), max_angle_u_deg=_f(ang_u.max()), max_angle_v_deg=_f(ang_v.max()),
               max_angle_deg=_f(max(ang_u.max(), ang_v.max())), gap_at_k=_f(gap),
               gap_at_k_rel=_f(gap / s0[0]) if s0[0] > 0 else None, alpha=opts.alpha,
               principal_energy=at_k["energy"], energy_isotropic=at_k["isotropic"],
               stable_rank_base=_f(sr0), stable_rank_tuned=_f(sr1), rel_update=math.sqrt(d2 / w2) if w2 > 0 else None,
               spectral_residual=resid, spectral_residual_isotropic=resid_iso,
               intruders=SP.intruders(Z0, Z1, INTRUDER_COS), **dw)
    out["angle_determined"] = bool(gap > 2.0 * dw["dw_norm2"]) if dw["dw_norm2"] is not None else None
    for req, e in zip(opts.sweep, sweep):
        out[f"energy_k{req}"], out[f"energy_iso_k{req}"], out[f"energy_ratio_k{req}"] = e["energy"], e["isotropic"], e["ratio"]
    out["sweep_k"] = [e["k"] for e in sweep[:-1]]
    return out


def _null_columns(mn: NL.MagnitudeNull, level: float, rec: dict) -> dict:
    """Per-tensor columns of the null: overlaps' null, range and excess; the fp16 prediction; the fitted drift."""
    out = {}
    for region, key in (("principal", "principal_overlap"), ("low_magnitude", "low_mag_overlap")):
        s = mn.overlaps[region].summary(level) if region in mn.overlaps and rec.get(key) is not None else None
        for suffix in ("null", "null_low", "null_high", "excess", "excess_low", "excess_high"):
            out[f"{key}_{suffix}"] = _f(s[suffix]) if s else None
    fp = mn.fp16_share.summary(level)
    out["sparsity_fp16_predicted"] = _f(1 - fp["null"])
    out["sparsity_fp16_predicted_low"] = _f(1 - fp["null_high"])
    out["sparsity_fp16_predicted_high"] = _f(1 - fp["null_low"])
    fit = mn.fit
    out["drift_sigma"] = _f(fit.pooled_sigma)
    ok = np.isfinite(fit.sigma) & (fit.changed > 0)
    ratio = fit.sigma_in_half_ulps()[ok]
    if ratio.size:
        order = np.argsort(ratio)
        w = np.cumsum(fit.n[ok][order])
        out["drift_half_ulps"] = float(ratio[order][np.searchsorted(w, w[-1] / 2)])
    else:
        out["drift_half_ulps"] = None
    return out


def runs_record(job, res, packed: list, consecutive: list) -> None:
    """C3 / C4 record of one tensor name across the runs holding it (``packed``: their changed masks, in run
    order; ``consecutive``: changed counts between consecutive runs): pairwise Jaccard against the
    independent-Bernoulli level pq / (p + q - pq) and, when ``res.c3_nulls`` holds them, the magnitude-matched
    null; stripes; changes between consecutive checkpoints; the share of the first run's changed set still
    changed in the last (C4); a consensus map when the job asks for one."""
    name, opts = job.name, job.opts
    layer, kind = parse_name(name)
    N = job.base.size
    R = len(packed)
    dens = [St.popcount(p) / N for p in packed]
    J = np.full((R, R), np.nan)
    base_ = np.full((R, R), np.nan)
    for i in range(R):
        for j in range(i + 1, R):
            inter, union = St.popcount(packed[i] & packed[j]), St.popcount(packed[i] | packed[j])
            J[i, j] = J[j, i] = inter / union if union else np.nan
            with jax.enable_x64(True):
                base_[i, j] = base_[j, i] = float(S.jaccard_random_baseline(dens[i], dens[j]))
    off = ~np.eye(R, dtype=bool)
    mean = lambda a: float(np.mean(a[np.isfinite(a)])) if np.any(np.isfinite(a)) else np.nan  # noqa: E731
    mj, mb = mean(J[off]), mean(base_[off])
    clean = lambda a: [[_f(x) for x in row] for row in a]  # noqa: E731
    first = St.popcount(packed[0])
    kept = St.popcount(packed[0] & packed[-1])
    rec = dict(name=name, layer=layer, kind=kind, size=N, runs=sorted(res.records), densities=dens,
               jaccard=clean(J), baseline=clean(base_), mean_jaccard=_f(mj), mean_baseline=_f(mb),
               excess=_f(mj - mb), ratio=_f(mj / mb) if mb and np.isfinite(mb) and mb > 0 else None,
               consecutive_changed=list(consecutive), consecutive_share=[c / N for c in consecutive],
               kept_share=kept / first if first else None)
    if res.c3_nulls:
        nl = res.c3_nulls
        for key, stat in (("mean_jaccard", nl["mean_jaccard"]), ("kept_share", nl["kept"].value()),
                          *((f"stripes_{a}", v) for a, v in nl["stripes"].items())):
            s = stat.summary(opts.level)
            if key.startswith("stripes_"):
                rec[key] = _f(s["observed"])
            for suffix in ("null", "null_low", "null_high", "excess", "excess_low", "excess_high"):
                rec[f"{key}_{suffix}"] = _f(s[suffix])
    res.c3 = rec
    if job.consensus and len(job.base.shape) == 2:
        grid, block = consensus_grid(packed, tuple(job.base.shape), is_kernel(name), opts.chunk)
        res.consensus = {"grid": grid, "block": block, "runs": R,
                         "shape": tuple(job.base.shape[::-1]) if is_kernel(name) else tuple(job.base.shape)}


def consensus_grid(masks: list[np.ndarray], shape: tuple[int, int], transposed: bool, chunk: int) -> tuple[np.ndarray, tuple]:
    """Share of runs that changed each coordinate, block-averaged to at most _MAX_GRID cells per side,
    in the analysed (out, in) orientation; returns (grid, (rows per cell, cols per cell))."""
    m, n = shape
    gr, gc = min(m, _MAX_GRID), min(n, _MAX_GRID)
    row_edges = np.linspace(0, m, gr + 1).astype(int)
    col_edges = np.linspace(0, n, gc + 1).astype(int)
    row_bin = np.searchsorted(row_edges, np.arange(m), side="right") - 1
    grid = np.zeros((gr, gc))
    for r0, r1 in St.row_ranges(m, n, chunk):
        tot = sum(St.unpack(p, r0 * n, r1 * n).reshape(r1 - r0, n).astype(np.float32) for p in masks)
        np.add.at(grid, row_bin[r0:r1], np.add.reduceat(tot, col_edges[:-1], axis=1))
    cells = np.outer(np.diff(row_edges), np.diff(col_edges)) * len(masks)
    grid = grid / cells
    block = (m / gr, n / gc)
    return (grid.T, block[::-1]) if transposed else (grid, block)
