"""Outputs of ``verify pair`` / ``verify pairs``: JSON, CSV, a Markdown report opening with its reading, figures.

Written through ``staging.staged_dir`` (only after the whole analysis succeeded; never touching files this
command did not write). Files of one pair: ``pair.json`` (summary, reading, one record per tensor),
``pair.csv`` (the rows of ``rows.table``, the same as the Python API's DataFrame), ``pair.md`` and
``fig_*.png``. ``pairs`` adds ``pairs.json`` / ``pairs.csv`` (C3 / C4 per tensor), ``pairs.md``,
``fig_jaccard.png``, ``fig_consecutive.png`` and ``consensus_<tensor>.png``, with one subfolder per tuned checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from verify.realckpt import figures as F
from verify.realckpt.analyze import PairResult, Result
from verify.realckpt.layout import KINDS
from verify.realckpt.reading import pair_reading, pairs_reading
from verify.realckpt.rows import RUNS_FIRST, write_csv
from verify.realckpt.staging import staged_dir
from verify.realckpt.summary import pair_summary, pairs_summary


def clean(x):
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python, tuple keys -> "i-j"."""
    if isinstance(x, dict):
        return {("-".join(map(str, k)) if isinstance(k, tuple) else k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if np.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    return x


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(clean(obj), indent=1) + "\n")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _num(x, fmt=".3g") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(x, fmt)


def slug(text: str) -> str:
    """A file-name-safe form of a tensor or checkpoint name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:80] or "x"


def _mean(vals) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _kind_table(records: list[dict], summary: dict) -> list[str]:
    lines = ["| kind | tensors | parameters | sparsity bf16 | principal overlap - null | low-mag overlap - null | NSS | "
             "max angle (deg) | angles determined | mean ||dW||_2 | energy / isotropic at k | dW top-1 share | intruders |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_kind = summary.get("null", {}).get("by_kind", {})
    for kind in KINDS:
        rs = [r for r in records if r["kind"] == kind]
        if not rs:
            continue
        size = sum(r["size"] for r in rs)
        sp = 1 - sum(r["changed_bf16"] for r in rs) / size
        nk = by_kind.get(kind, {})
        exc = lambda key: (f"{nk[key]['excess']:+.4f} [{nk[key]['excess_low']:+.4f}, {nk[key]['excess_high']:+.4f}]"  # noqa: E731
                           if key in nk and nk[key]["excess_low"] is not None and np.isfinite(nk[key]["excess_low"]) else "n/a")
        mats = [r for r in rs if r.get("nss") is not None]
        ratio = _mean([r["principal_energy"] / r["energy_isotropic"] for r in mats if r.get("principal_energy") is not None])
        det = f"{sum(bool(r['angle_determined']) for r in mats)} / {len(mats)}" if mats else "n/a"
        lines.append(
            f"| {kind} | {len(rs)} | {size:,} | {_pct(sp)} | {exc('principal_overlap')} | {exc('low_mag_overlap')} | "
            f"{_num(_mean(r['nss'] for r in mats))} | {_num(_mean(r['max_angle_deg'] for r in mats))} | {det} | "
            f"{_num(_mean(r.get('dw_norm2') for r in mats))} | {_num(ratio)} | {_num(_mean(r.get('dw_top1_share') for r in mats))} | "
            f"{sum(r.get('intruders') or 0 for r in mats) if mats else 'n/a'} |")
    return lines


def _listing(title: str, items: list[dict], fmt) -> list[str]:
    if not items:
        return [f"- {title}: none"]
    shown = [f"  - {fmt(i)}" for i in items[:25]]
    more = [f"  - ... and {len(items) - 25} more (see pair.json)"] if len(items) > 25 else []
    return [f"- {title}: {len(items)}", *shown, *more]


NOTES = [
    "Sparsity = share of weights whose bf16 value is unchanged: relative probe |w1 - w0| <= eta max(|w0|, |w1|) (paper, "
    "claim C2; for eta < 2^-8 it equals bitwise inequality of bf16 values, theory.precision, and is read from the bits), "
    "bitwise, and the absolute probe |w1 - w0| <= tol of Mukherjee et al. on the values as stored.",
    "Tensors stored as F32 (or F16 / F64) are rounded to bf16 (nearest even) before the bf16 probes; spectral metrics and "
    "masks read the values as stored. sparsity_fp16: the same with an fp16 export (theory.precision.to_fp16).",
    "Magnitude-matched null (theory.null): within each bf16 binade of |w0| a Gaussian drift whose RMS makes the expected "
    "changed share equal the observed one; its draws give each overlap's null and range; an excess range containing 0 "
    "reads 'explained by magnitude'. sparsity_fp16_predicted: what an fp16 export would show under that drift.",
    "Singular values and top-k vectors: float64 Gram matrices and a dense symmetric eigensolver (exact, no randomisation). "
    "Principal energy at k: share of ||dW||_F^2 inside the top-k singular subspaces of W0 on both sides; isotropic level "
    "k^2/(mn). Spectral residual: ||sigma(W1) - sigma(W0)|| / ||dW||_F, isotropic level 1/sqrt(max(m, n)).",
    "An angle is determined only where the gap gamma_k = sigma_k - sigma_k+1 of W0 exceeds 2 ||dW||_2 (angle_determined).",
    "This suite's *.kernel tensors are stored (in, out) and analysed as (out, in); Hugging Face *.weight matrices are (out, in).",
]


def pair_markdown(summary: dict, figures: list[tuple[str, str]]) -> str:
    """pair.md: the reading, totals, lists, a per-kind table, the energy sweep, linked figures, notes."""
    recs = summary["tensors"]
    o = summary["options"]
    lines = ["# Checkpoint pair: what changed, against magnitude and isotropic nulls", "",
             f"- base: `{summary['base']}`", f"- tuned: `{summary['tuned']}`", "", "## Reading", "",
             *[f"- {line}" for line in summary["reading"]], "", "## Totals", "",
             f"- compared: {summary['params']:,} parameters in {len(recs)} tensors; rank k = {o['rank']}, alpha = {o['alpha']}, "
             f"eta = {o['eta']}, absolute tol = {o['tol']}, {o['draws']} null draws (seed {o['seed']}), ranges {100 * o['level']:.0f} %"
             + ("; sparsity only" if o["sparsity_only"] else ""),
             f"- **bf16 update sparsity** (share unchanged): **{_pct(summary['sparsity_bf16'])}**; bitwise: "
             f"{_pct(summary['sparsity_bitwise'])}; absolute probe: {_pct(summary['sparsity_abs'])}; fp16 export: {_pct(summary['sparsity_fp16'])}",
             f"- probe disagreements: absolute says changed where bf16 is unchanged: {summary['abs_only']:,}; absolute says "
             f"unchanged where bf16 changed: {summary['rel_only']:,}",
             *_listing("missing from the tuned checkpoint", summary["missing"], lambda i: f"`{i['name']}` ({i['note']})"),
             *_listing("extra in the tuned checkpoint", summary["extra"], lambda i: f"`{i['name']}` ({i['note']})"),
             *_listing("shape mismatched", summary["mismatched"], lambda i: f"`{i['name']}` base {i['base_shape']} tuned {i['tuned_shape']}"),
             *_listing("skipped", summary["skipped"], lambda i: f"`{i['name']}` ({i['reason']})"),
             *_listing("rounded to bf16 before the bf16 probes", [{"name": n, "side": s} for s, v in summary["rounded_from_f32"].items() for n in v],
                       lambda i: f"`{i['name']}` ({i['side']})"),
             f"- time: {summary['seconds']} s", ""]
    if not o["sparsity_only"]:
        lines += ["## By module kind (means over tensors; overlaps pooled, with their null ranges)", "", *_kind_table(recs, summary), ""]
        sweep = summary.get("energy_sweep", [])
        if any(e["matrices"] for e in sweep):
            lines += ["## Principal energy of dW against the isotropic level", "",
                      "| k | matrices | median energy / isotropic | above the isotropic 95 % range | below it |", "|---|---|---|---|---|"]
            lines += [f"| {e['k']} | {e['matrices']} | {_num(e['median_ratio'])} | {e['above_isotropic']} | {e['below_isotropic']} |"
                      for e in sweep]
            lines.append("")
    lines += ["Per-tensor values: `pair.csv`, `pair.json` (column meanings: README, \"Real checkpoints\").", "", "## Figures", ""]
    for title, name in figures:
        lines += [f"![{title}]({name})", ""]
    lines += ["## Notes", "", *[f"- {n}" for n in NOTES], ""]
    return "\n".join(lines)


def write_pair(folder: Path, pr: PairResult, figures: bool = True) -> dict:
    """Write pair.json, pair.csv, the figures and pair.md of one pair into ``folder``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = pair_summary(pr)
    summary["reading"] = pair_reading(summary)
    _write_json(folder / "pair.json", summary)
    write_csv(folder / "pair.csv", summary["tensors"])
    figs = (F.pair_figures(folder, summary["tensors"], pr.nulls, pr.options.alpha, pr.options.sweep, pr.options.level)
            if figures else [])
    (folder / "pair.md").write_text(pair_markdown(summary, figs))
    return summary


def pairs_markdown(summary: dict, summaries: list[dict], subfolders: list[str], figures: list[tuple[str, str]]) -> str:
    """pairs.md: the reading, per-run sparsity with links to each pair report, linked figures."""
    lines = ["# Tuned checkpoints of one base: consistency (C3) and consecutive checkpoints (C4)", "",
             f"- base: `{summary['base']}`", "", "## Reading", "", *[f"- {line}" for line in summary["reading"]], "",
             "| checkpoint | tuned | sparsity bf16 | report |", "|---|---|---|---|"]
    for i, (s, sub) in enumerate(zip(summaries, subfolders)):
        lines.append(f"| {i + 1} | `{s['tuned']}` | {_pct(s['sparsity_bf16'])} | [{sub}/pair.md]({sub}/pair.md) |")
    lines += ["", "Per tensor: `pairs.csv`, `pairs.json`.", "", "## Figures", ""]
    for title, name in figures:
        lines += [f"![{title}]({name})", ""]
    return "\n".join(lines)


def write_all(out, res: Result, figures: bool = True) -> tuple[Path, list[dict], dict | None]:
    """Write the whole output of a ``pair`` (one tuned) or ``pairs`` (several) call into ``out`` (``staging``);
    returns (folder, pair summaries, pairs summary or None)."""
    with staged_dir(out) as tmp:
        if len(res.pairs) == 1:
            summaries, ps = [write_pair(tmp, res.pairs[0], figures)], None
        else:
            subs = [f"{i + 1:02d}-{slug(Path(p.tuned).name)}" for i, p in enumerate(res.pairs)]
            summaries = [write_pair(tmp / sub, p, figures) for sub, p in zip(subs, res.pairs)]
            ps = pairs_summary(res, summaries)
            ps["reading"] = pairs_reading(ps)
            _write_json(tmp / "pairs.json", {**ps, "subfolders": subs, "tensors": res.c3})
            write_csv(tmp / "pairs.csv", res.c3, RUNS_FIRST)
            figs = F.runs_figures(tmp, res.c3, ps["consecutive"]["changed_share"]) if figures else []
            for name, c in res.consensus.items() if figures else ():
                figs.append((f"Consensus map of {name}", F.consensus_figure(tmp, name, c, slug(name))))
            (tmp / "pairs.md").write_text(pairs_markdown(ps, summaries, subs, figs))
    return Path(out).expanduser().resolve(), summaries, ps
