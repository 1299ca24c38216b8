"""PNG figures of ``pair`` / ``pairs`` (docs/design.md: plain matplotlib, titled axes with units).

Every by-layer figure has one line per module kind: tensors of the same layer and kind (a weight and its
bias) are pooled into one point (changed counts add; other metrics are size-weighted means), and the
embedding (left of layer 0) and the final norm and head (right of the last layer) are drawn too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verify.realckpt.layout import KINDS
from verify.realckpt.options import PAPER_RL_BAND, PAPER_SFT_BAND
from verify.realckpt.summary import OVERLAPS


def color(kind: str) -> str:
    """The same color for a module kind in every figure."""
    return f"C{KINDS.index(kind) % 10}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _positions(records: list[dict]) -> tuple[dict, list, list]:
    """x position of each record (embed: -1, layers: their index, the rest: last layer + 1) and axis ticks."""
    layers = [r["layer"] for r in records if r["layer"] is not None]
    last = max(layers) if layers else 0
    pos = {}
    for r in records:
        pos[r["name"]] = r["layer"] if r["layer"] is not None else (-1 if r["kind"] == "embed" else last + 1)
    ticks = sorted(set(pos.values()))
    labels = ["embed" if t == -1 else ("head/norm" if t == last + 1 and (not layers or t not in layers) else str(t)) for t in ticks]
    if len(ticks) > 16:  # keep ends and every few layers readable
        keep = set(ticks[:: max(1, len(ticks) // 12)]) | {ticks[0], ticks[-1]}
        labels = [lab if t in keep else "" for t, lab in zip(ticks, labels)]
    return pos, ticks, labels


def by_kind(records: list[dict], value, pos: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{kind: (x, y)} with one point per (position, kind): ``value(records of that point)`` -> float or None."""
    out = {}
    for kind in KINDS:
        groups: dict = {}
        for r in records:
            if r["kind"] == kind:
                groups.setdefault(pos[r["name"]], []).append(r)
        pts = [(x, value(rs)) for x, rs in sorted(groups.items())]
        pts = [(x, y) for x, y in pts if y is not None and np.isfinite(y)]
        if pts:
            out[kind] = (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))
    return out


def mean_of(key: str):
    """Size-weighted mean of ``key`` over a point's records (None where none has it)."""
    def value(rs):
        v = [(r[key], r["size"]) for r in rs if r.get(key) is not None]
        return float(np.average([a for a, _ in v], weights=[w for _, w in v])) if v else None
    return value


def _pooled_sparsity(rs):
    return 1 - sum(r["changed_bf16"] for r in rs) / sum(r["size"] for r in rs)


def _save(fig, ax, folder: Path, name: str, title: str, xlabel: str, ylabel: str, ticks=None, labels=None) -> str:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=8)
    if ticks is not None:
        ax.set_xticks(ticks, labels, fontsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.13, top=0.91)  # tight_layout costs as much as the drawing
    fig.savefig(folder / name, dpi=110)
    _plt().close(fig)
    return name


def _lines(ax, series: dict, scale: float = 1.0, **kw) -> None:
    for kind, (x, y) in series.items():
        ax.plot(x, scale * y, "o-", ms=3, lw=1.2, color=color(kind), label=kind, **kw)


def pair_figures(folder: Path, records: list[dict], nulls: list[dict], alpha: float, sweep, level: float) -> list[tuple[str, str]]:
    """Every figure of one pair; returns [(title, file name)] of those drawn (a metric with no values is skipped)."""
    plt = _plt()
    pos, ticks, labels = _positions(records)
    drawn = []
    xl = "layer index (embedding left, final norm and head right)"

    def fig_by_layer(name, title, ylabel, series, scale=1.0, log=False, ref=None):
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        _lines(ax, series, scale)
        if ref:
            ref(ax)
        if log:
            ax.set_yscale("log")
        drawn.append((title, _save(fig, ax, folder, name, title, xl, ylabel, ticks, labels)))

    def bands(ax):
        ax.axhspan(100 * PAPER_RL_BAND[0], 100 * PAPER_RL_BAND[1], color="C2", alpha=0.08, label="paper RL band")
        ax.axhspan(100 * PAPER_SFT_BAND[0], 100 * PAPER_SFT_BAND[1], color="C3", alpha=0.08, label="paper SFT band")

    fig_by_layer("fig_sparsity_bf16.png", "bf16 update sparsity (relative probe, eta = 1e-3)", "unchanged weights (%)",
                 by_kind(records, _pooled_sparsity, pos), 100.0, ref=bands)
    for region, key in OVERLAPS:
        series = by_kind(records, mean_of(key), pos)
        null = by_kind(records, mean_of(f"{key}_null"), pos)

        def ref(ax, null=null):
            for kind, (x, y) in null.items():
                ax.plot(x, y, ":", lw=1, color=color(kind))
            ax.axhline(alpha, color="k", ls="--", lw=0.8, label=f"random level alpha = {alpha:g}")
            ax.plot([], [], "k:", lw=1, label="magnitude-matched null (dotted)")

        label = "principal mask (LIFT, top-k of W0)" if region == "principal" else "low-magnitude mask of W0"
        fig_by_layer(f"fig_{key}.png", f"Overlap of the changed set with the {label}", "|changed & mask| / |changed| (ratio)", series, ref=ref)
    _excess_figure(folder, records, nulls, pos, ticks, labels, level, drawn)
    fig_by_layer("fig_nss.png", "Normalised spectral shift |sigma(W1) - sigma(W0)| / |sigma(W0)|", "NSS (ratio, log scale)",
                 by_kind(records, mean_of("nss"), pos), log=True)
    undetermined = [r for r in records if r.get("angle_determined") is False]

    def open_marks(ax):
        if undetermined:
            ax.plot([pos[r["name"]] for r in undetermined], [r["max_angle_deg"] for r in undetermined], "kx", ms=5,
                    label="not determined (gap_k <= 2 ||dW||_2)")

    fig_by_layer("fig_max_angle_deg.png", "Largest principal angle of the top-k singular subspaces (max of U and V)",
                 "angle (degrees)", by_kind(records, mean_of("max_angle_deg"), pos), ref=open_marks)
    iso = by_kind(records, mean_of("energy_isotropic"), pos)

    def iso_lines(ax):
        for kind, (x, y) in iso.items():
            ax.plot(x, y, ":", lw=1, color=color(kind))
        ax.plot([], [], "k:", lw=1, label="isotropic level k^2/(mn) (dotted)")

    fig_by_layer("fig_principal_energy.png", "Principal energy share of dW at k = rank (top-k of W0)",
                 "|U_k^T dW V_k|_F^2 / |dW|_F^2 (log scale)", by_kind(records, mean_of("principal_energy"), pos), log=True, ref=iso_lines)
    fig_by_layer("fig_stable_rank.png", "Stable rank |W|_F^2 / |W|_2^2 of the base", "stable rank (dimensionless)",
                 by_kind(records, mean_of("stable_rank_base"), pos))
    ratio = lambda rs: mean_of("dw_top1_share")(rs) / mean_of("dw_top1_isotropic")(rs) if mean_of("dw_top1_share")(rs) else None  # noqa: E731
    fig_by_layer("fig_dw_top1.png", "Top-1 singular direction's share of |dW|_F^2 against an isotropic update's",
                 "share / isotropic share (log scale)", by_kind(records, ratio, pos), log=True,
                 ref=lambda ax: ax.axhline(1.0, color="k", ls="--", lw=0.8, label="isotropic"))
    _sweep_figure(folder, records, sweep, drawn)
    return drawn


def _excess_figure(folder, records, nulls, pos, ticks, labels, level, drawn) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    any_drawn = False
    for ax, (region, key) in zip(axes, OVERLAPS):
        for kind in KINDS:
            groups: dict = {}
            for r, nl in zip(records, nulls):
                if r["kind"] == kind and region in nl and r.get(key) is not None:
                    groups[pos[r["name"]]] = groups[pos[r["name"]]] + nl[region] if pos[r["name"]] in groups else nl[region]
            if not groups:
                continue
            xs = sorted(groups)
            s = [groups[x].summary(level) for x in xs]
            y = np.array([v["excess"] for v in s])
            err = np.array([[v["excess"] - v["excess_low"], v["excess_high"] - v["excess"]] for v in s]).T
            ax.errorbar(xs, y, yerr=err, fmt="o-", ms=3, lw=1.0, capsize=2, color=color(kind), label=kind)
            any_drawn = True
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(f"{'principal' if region == 'principal' else 'low-magnitude'} mask", fontsize=9)
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_xlabel("layer index")
    if not any_drawn:
        plt.close(fig)
        return
    axes[0].set_ylabel("overlap - magnitude null (ratio)", fontsize=8)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Overlap excess over the magnitude-matched null (bars: {100 * level:.0f} % range of the null)", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.86, wspace=0.05)
    fig.savefig(folder / "fig_overlap_excess.png", dpi=110)
    plt.close(fig)
    drawn.append(("Overlap excess over the magnitude-matched null, by layer", "fig_overlap_excess.png"))


def _sweep_figure(folder, records, sweep, drawn) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    any_drawn = False
    for kind in KINDS:
        ks, med = [], []
        for req in sweep:
            v = [r[f"energy_ratio_k{req}"] for r in records if r["kind"] == kind and r.get(f"energy_ratio_k{req}") is not None]
            if v:
                ks.append(req)
                med.append(float(np.median(v)))
        if ks:
            ax.plot(ks, med, "o-", ms=4, lw=1.2, color=color(kind), label=kind)
            any_drawn = True
    if not any_drawn:
        plt.close(fig)
        return
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="isotropic level k^2/(mn)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    drawn.append(("Principal energy against the isotropic level over k", _save(
        fig, ax, folder, "fig_energy_sweep.png", "Principal energy of dW over k, against isotropic (median over matrices)",
        "k (top-k singular subspaces of W0; clipped to min(m, n))", "energy share / (k^2/(mn)) (log scale)")))


def runs_figures(folder: Path, c3: list[dict], consecutive: list[float]) -> list[tuple[str, str]]:
    """Mean pairwise Jaccard by layer against the Bernoulli level and the magnitude null; changes between
    consecutive checkpoints."""
    plt = _plt()
    drawn = []
    pos, ticks, labels = _positions(c3)
    series = by_kind(c3, mean_of("mean_jaccard"), pos)
    if series:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        _lines(ax, series)
        for extra, style, label in (("mean_baseline", ":", "independent Bernoulli level pq/(p+q-pq) (dotted)"),
                                    ("mean_jaccard_null", "--", "magnitude-matched null (dashed)")):
            ref = by_kind(c3, mean_of(extra), pos)
            for kind, (x, y) in ref.items():
                ax.plot(x, y, style, lw=1, color=color(kind))
            if ref:
                ax.plot([], [], "k" + style, lw=1, label=label)
        drawn.append(("Mean pairwise Jaccard against layer index", _save(
            fig, ax, folder, "fig_jaccard.png", "C3: mean pairwise Jaccard of bf16 changed masks across runs",
            "layer index", "Jaccard |A & B| / |A | B| (ratio)", ticks, labels)))
    if len(consecutive) >= 2:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot(np.arange(1, len(consecutive) + 1), 100 * np.asarray(consecutive, float), "o-", ms=4)
        ax.axhspan(1, 2, color="C2", alpha=0.1, label="published large-scale RL: about 1 to 2 % per step")
        drawn.append(("Weights changed between consecutive checkpoints", _save(
            fig, ax, folder, "fig_consecutive.png", "bf16 weights changed: base -> 1st, then between consecutive checkpoints",
            "checkpoint (order given on the command line)", "changed weights (%)")))
    return drawn


def consensus_figure(folder: Path, name: str, c: dict, slug: str) -> str:
    """Heat map of a consensus grid (share of runs that changed each weight, block-averaged)."""
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
    fname = f"consensus_{slug}.png"
    fig.savefig(folder / fname, dpi=110)
    plt.close(fig)
    return fname
