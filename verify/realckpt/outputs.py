"""Outputs of ``verify pair`` / ``verify pairs``: JSON, CSV, a Markdown summary and PNG figures.

Everything is written into a temporary folder beside the output folder and renamed into place at the
end (``staged_dir``), after the whole analysis succeeded, so an error or an interrupt never leaves a
half-written output folder; an earlier output folder of this command is replaced whole.

Files of one pair (docs/design.md: plain matplotlib PNGs with titled axes and units, linked from the report):
``pair.json`` (totals, lists, one record per tensor), ``pair.csv`` (one row per tensor), ``pair.md``
(summary with the figures), ``fig_<metric>.png`` (metric against layer index, one line per module kind).
``pairs`` adds ``pairs.json`` / ``pairs.csv`` (Jaccard per tensor, claim C3), ``pairs.md``,
``fig_jaccard.png`` and ``consensus_<tensor>.png``, with one subfolder per tuned checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from verify.realckpt.analyze import PairResult, Result
from verify.realckpt.layout import KINDS, BadInput

MARKERS = ("pair.json", "pairs.json")

# (record key, figure title, y label, log scale, reference)
PAIR_FIGURES = (
    ("sparsity_bf16", "bf16 update sparsity (relative probe, eta = 1e-3)", "unchanged weights (%)", False, None),
    ("nss", "Normalised spectral shift |sigma(W1) - sigma(W0)| / |sigma(W0)|", "NSS (ratio, log scale)", True, None),
    ("max_angle_deg", "Largest principal angle of the top-k singular subspaces (max of U and V)", "angle (degrees)", False, None),
    ("principal_overlap", "Overlap of the changed set with the principal mask of W0", "|changed & principal| / |changed| (ratio)", False, "alpha"),
    ("low_mag_overlap", "Overlap of the changed set with the low-magnitude mask of W0", "|changed & low-magnitude| / |changed| (ratio)", False, "alpha"),
    ("principal_energy", "Principal energy share of dW (top-k of W0)", "|U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 (log scale)", True, "energy_isotropic"),
    ("stable_rank", "Stable rank |W|_F^2 / |W|_2^2 (solid: base, dashed: tuned)", "stable rank (dimensionless)", False, None),
)

CSV_FIRST = ("name", "layer", "kind", "shape", "dtype", "size", "sparsity_bf16", "sparsity_bitwise", "sparsity_abs")


# ----------------------------------------------------------------------------------------------
# staging and small writers


@contextmanager
def staged_dir(out):
    """Yield a fresh temporary folder beside ``out``; on success rename it to ``out`` (replacing an earlier
    output of this command), on any error delete it and leave ``out`` as it was.

    Refuses (``BadInput``) an ``out`` that is a file, or a non-empty folder without ``pair.json`` /
    ``pairs.json`` (not an earlier output: it is never deleted)."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise BadInput(f"Output path {out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in MARKERS):
        raise BadInput(f"Output folder {out} is not empty and holds no earlier pair.json or pairs.json; choose another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clean(x):
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(_clean(obj), indent=1) + "\n")


def _write_csv(path: Path, rows: list[dict], first: tuple = ()) -> None:
    keys = list(first) + sorted({k for r in rows for k in r} - set(first))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("x".join(map(str, v)) if k == "shape" else json.dumps(_clean(v)) if isinstance(v, (list, dict))
                        else "" if v is None else v) for k, v in r.items()})
    path.write_text(buf.getvalue())


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _num(x, fmt=".3g") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(x, fmt)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:80] or "x"


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_kind(records: list[dict], key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for kind in KINDS:
        pts = sorted((r["layer"], r[key]) for r in records
                     if r["kind"] == kind and r["layer"] is not None and r.get(key) is not None)
        if pts:
            out[kind] = (np.array([p[0] for p in pts]), np.array([p[1] for p in pts], float))
    return out


def pair_figures(folder: Path, records: list[dict], alpha: float) -> list[tuple[str, str]]:
    """One PNG per metric of ``PAIR_FIGURES`` (metric against layer index, one line per module kind);
    returns [(title, file name)] of the figures drawn (a metric with no layered values is skipped)."""
    plt = _plt()
    drawn = []
    for key, title, ylabel, log, ref in PAIR_FIGURES:
        series = _by_kind(records, "stable_rank_base" if key == "stable_rank" else key)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for i, (kind, (x, y)) in enumerate(series.items()):
            color = f"C{i % 10}"
            yy = 100 * y if key == "sparsity_bf16" else y
            ax.plot(x, yy, "o-", ms=3, lw=1.2, color=color, label=kind)
            if key == "stable_rank":
                x1, y1 = _by_kind(records, "stable_rank_tuned").get(kind, ([], []))
                ax.plot(x1, y1, "--", lw=1.2, color=color)
            if ref == "energy_isotropic":
                xi, yi = _by_kind(records, "energy_isotropic")[kind]
                ax.plot(xi, yi, ":", lw=1, color=color)
        if ref == "alpha":
            ax.axhline(alpha, color="k", ls=":", lw=1, label=f"random level alpha = {alpha:g}")
        if ref == "energy_isotropic":
            ax.plot([], [], "k:", lw=1, label="isotropic level k^2/(mn) (dotted)")
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer index")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7, ncol=2)
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.91)  # tight_layout costs as much as the drawing
        name = f"fig_{key}.png"
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        drawn.append((title, name))
    return drawn


def _jaccard_figure(folder: Path, c3: list[dict]) -> str | None:
    series = _by_kind(c3, "mean_jaccard")
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (kind, (x, y)) in enumerate(series.items()):
        ax.plot(x, y, "o-", ms=3, lw=1.2, color=f"C{i % 10}", label=kind)
        xb, yb = _by_kind(c3, "mean_baseline")[kind]
        ax.plot(xb, yb, ":", lw=1, color=f"C{i % 10}")
    ax.plot([], [], "k:", lw=1, label="independent baseline pq/(p+q-pq) (dotted)")
    ax.set_title("C3: mean pairwise Jaccard of bf16 changed masks across runs", fontsize=9)
    ax.set_xlabel("layer index")
    ax.set_ylabel("Jaccard |A & B| / |A | B| (ratio)", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.91)
    fig.savefig(folder / "fig_jaccard.png", dpi=110)
    plt.close(fig)
    return "fig_jaccard.png"


def _consensus_figure(folder: Path, name: str, c: dict) -> str:
    plt = _plt()
    grid = c["grid"]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    im = ax.imshow(100 * grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label="runs that changed the weight (%)")
    br, bc = c["block"]
    cell = "" if br == bc == 1 else f"; cells average {br:.3g} x {bc:.3g} weights"
    ax.set_title(f"C3 consensus over {c['runs']} runs: {name}\nshape {c['shape'][0]} x {c['shape'][1]} (out, in){cell}", fontsize=8)
    ax.set_xlabel("input unit (column index, scaled to the grid)")
    ax.set_ylabel("output unit (row index, scaled to the grid)")
    fig.tight_layout()
    fname = f"consensus_{_slug(name)}.png"
    fig.savefig(folder / fname, dpi=110)
    plt.close(fig)
    return fname


# ----------------------------------------------------------------------------------------------
# reports


def _mean(vals) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _kind_table(records: list[dict]) -> list[str]:
    lines = ["| kind | tensors | parameters | sparsity bf16 | NSS | max angle (deg) | gap_k / sigma_1 | principal overlap | "
             "low-mag overlap | principal energy / isotropic | stable rank base -> tuned |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        rs = [r for r in records if r["kind"] == kind]
        if not rs:
            continue
        size = sum(r["size"] for r in rs)
        sp = 1 - sum(r["changed_bf16"] for r in rs) / size
        ratio = _mean([r["principal_energy"] / r["energy_isotropic"] for r in rs
                       if r.get("principal_energy") is not None and r.get("energy_isotropic")])
        lines.append(
            f"| {kind} | {len(rs)} | {size:,} | {_pct(sp)} | {_num(_mean(r['nss'] for r in rs))} | "
            f"{_num(_mean(r['max_angle_deg'] for r in rs))} | {_num(_mean(r['gap_at_k_rel'] for r in rs))} | "
            f"{_num(_mean(r['principal_overlap'] for r in rs))} | {_num(_mean(r['low_mag_overlap'] for r in rs))} | "
            f"{_num(ratio)} | {_num(_mean(r['stable_rank_base'] for r in rs))} -> {_num(_mean(r['stable_rank_tuned'] for r in rs))} |")
    return lines


def _listing(title: str, items: list[dict], fmt) -> list[str]:
    if not items:
        return [f"- {title}: none"]
    shown = [f"  - {fmt(i)}" for i in items[:25]]
    more = [f"  - ... and {len(items) - 25} more (see pair.json)"] if len(items) > 25 else []
    return [f"- {title}: {len(items)}", *shown, *more]


NOTES = [
    "Sparsity = share of weights whose bf16 value is unchanged: relative probe |w1 - w0| <= eta max(|w0|, |w1|) "
    "(paper, claim C2; equals bitwise equality for bf16), bitwise uint16 comparison (signed zeros equal), and the "
    "absolute probe |w1 - w0| <= tol of Mukherjee et al. on the values as stored.",
    "Tensors stored as F32 (or F16 / F64) are rounded to bf16 (nearest even, theory.precision.to_bf16) before the "
    "bf16 probes; spectral metrics and masks read the values as stored.",
    "Singular values and top-k vectors: float64 Gram matrix of the smaller side, dense symmetric eigensolver "
    "(exact method, no randomisation); the gap gamma_k = sigma_k - sigma_k+1 of W0 is reported beside each angle: "
    "an angle is meaningful only where gamma_k is well above the update's spectral norm.",
    "Overlap = |changed & mask| / |changed| with masks of the base at share alpha: its random level is alpha. "
    "Principal mask: top alpha of |rank-k reconstruction of W0| (LIFT); low-magnitude mask: bottom alpha of |W0|.",
    "This suite's *.kernel tensors are stored (in, out) and analysed as (out, in), like "
    "toy_models.transformer.weight_matrices; Hugging Face *.weight matrices are (out, in) already.",
]


def pair_markdown(summary: dict, figures: list[tuple[str, str]]) -> str:
    """pair.md: the totals, probe disagreements, what was rounded, the lists, a per-kind table, linked figures."""
    recs = summary["tensors"]
    o = summary["options"]
    rounded = summary["rounded_from_f32"]
    rnd = "; ".join(f"{side}: {len(v)} tensors" for side, v in rounded.items() if v) or "none (every tensor is BF16 on both sides)"
    mats = [r for r in recs if r.get("nss") is not None]
    lines = [
        "# Checkpoint pair: bf16 update sparsity and spectral geometry", "",
        f"- base: `{summary['base']}`", f"- tuned: `{summary['tuned']}`",
        f"- compared: {summary['params']:,} parameters in {len(recs)} tensors ({len(mats)} matrices); "
        f"rank k = {o['rank']}, alpha = {o['alpha']}, eta = {o['eta']}, absolute tol = {o['tol']}",
        f"- **bf16 update sparsity** (share unchanged, relative probe): **{_pct(summary['sparsity_bf16'])}**; "
        f"bitwise: {_pct(summary['sparsity_bitwise'])}; absolute probe: {_pct(summary['sparsity_abs'])}",
        f"- probe disagreements: absolute says changed where bf16 is unchanged: {summary['abs_only']:,}; absolute says "
        f"unchanged where bf16 changed: {summary['rel_only']:,}; relative vs bitwise: {summary['rel_vs_bitwise']:,}",
        f"- rounded to bf16 before the bf16 probes: {rnd}",
        *_listing("missing from the tuned checkpoint", summary["missing"], lambda i: f"`{i['name']}` ({i['note']})"),
        *_listing("extra in the tuned checkpoint", summary["extra"], lambda i: f"`{i['name']}` ({i['note']})"),
        *_listing("shape mismatched", summary["mismatched"], lambda i: f"`{i['name']}` base {i['base_shape']} tuned {i['tuned_shape']}"),
        *_listing("skipped", summary["skipped"], lambda i: f"`{i['name']}` ({i['reason']})"),
        f"- time: {summary['seconds']} s", "",
        "## By module kind (means over tensors)", "", *_kind_table(recs), "",
        "Per-tensor values: `pair.csv`, `pair.json`.", "",
        "## Figures", "",
    ]
    for title, name in figures:
        lines += [f"![{title}]({name})", ""]
    lines += ["## Notes", "", *[f"- {n}" for n in NOTES], ""]
    return "\n".join(lines)


def write_pair(folder: Path, pr: PairResult, figures: bool = True) -> dict:
    """Write pair.json, pair.csv, the figures and pair.md of one pair into ``folder``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = pr.summary()
    _write_json(folder / "pair.json", summary)
    _write_csv(folder / "pair.csv", summary["tensors"], CSV_FIRST)
    figs = pair_figures(folder, summary["tensors"], pr.options.alpha) if figures else []
    (folder / "pair.md").write_text(pair_markdown(summary, figs))
    return summary


def pairs_markdown(res: Result, summaries: list[dict], subfolders: list[str], figures: list[tuple[str, str]]) -> str:
    """pairs.md: per-run sparsity with links to each pair report, the C3 Jaccard summary, linked figures."""
    size = sum(r["size"] for r in res.c3) or 1
    w = lambda key: sum(r[key] * r["size"] for r in res.c3 if r[key] is not None) / size
    lines = ["# Runs from one base: sparsity per run and consistency of changed masks (C3)", "",
             f"- base: `{res.base}`", "", "| run | tuned checkpoint | sparsity bf16 | report |", "|---|---|---|---|"]
    for i, (s, sub) in enumerate(zip(summaries, subfolders)):
        lines.append(f"| {i + 1} | `{s['tuned']}` | {_pct(s['sparsity_bf16'])} | [{sub}/pair.md]({sub}/pair.md) |")
    lines += ["", f"Mean pairwise Jaccard of bf16 changed masks over {len(res.c3)} tensors (parameter-weighted): "
              f"**{_num(w('mean_jaccard'))}** against the independent-Bernoulli baseline pq/(p+q-pq) "
              f"**{_num(w('mean_baseline'))}**. Per tensor: `pairs.csv`, `pairs.json`.", "",
              "## By module kind", "", "| kind | tensors | mean Jaccard | mean baseline |", "|---|---|---|---|"]
    for kind in KINDS:
        rs = [r for r in res.c3 if r["kind"] == kind]
        if rs:
            lines.append(f"| {kind} | {len(rs)} | {_num(_mean(r['mean_jaccard'] for r in rs))} | {_num(_mean(r['mean_baseline'] for r in rs))} |")
    lines += ["", "## Figures", ""]
    for title, name in figures:
        lines += [f"![{title}]({name})", ""]
    return "\n".join(lines)


def write_all(out, res: Result, figures: bool = True) -> Path:
    """Write the whole output of a ``pair`` (one tuned) or ``pairs`` (several) call atomically into ``out``
    (``figures=False``: no PNGs)."""
    with staged_dir(out) as tmp:
        if len(res.pairs) == 1:
            write_pair(tmp, res.pairs[0], figures)
        else:
            subs = [f"{i + 1:02d}-{_slug(Path(p.tuned).name)}" for i, p in enumerate(res.pairs)]
            summaries = [write_pair(tmp / sub, p, figures) for sub, p in zip(subs, res.pairs)]
            c3 = [{k: v for k, v in r.items()} for r in res.c3]
            _write_json(tmp / "pairs.json", {"base": res.base, "tuned": [p.tuned for p in res.pairs],
                                             "subfolders": subs, "tensors": c3,
                                             "sparsity_bf16": [s["sparsity_bf16"] for s in summaries]})
            _write_csv(tmp / "pairs.csv", [{k: v for k, v in r.items() if k not in ("jaccard", "baseline")} for r in c3],
                       ("name", "layer", "kind", "size", "mean_jaccard", "mean_baseline", "excess", "ratio"))
            figs = []
            j = _jaccard_figure(tmp, res.c3) if figures else None
            if j:
                figs.append(("Mean pairwise Jaccard against layer index", j))
            for name, c in res.consensus.items() if figures else ():
                figs.append((f"Consensus map of {name}", _consensus_figure(tmp, name, c)))
            (tmp / "pairs.md").write_text(pairs_markdown(res, summaries, subs, figs))
    return Path(out).resolve()
