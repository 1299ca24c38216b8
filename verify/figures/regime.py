"""Figures of the regime map: predicted against measured sparsity, metrics against the drift ratio (phase plots),
metrics against width and sparsity under three optimizers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def predicted_sparsity(methods, measured, from_drift, from_regime, r2_drift: float, r2_regime: float):
    """Measured against predicted sparsity per run, both predictors, RL and SFT apart, the identity line."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for m, mark in (("rl", "o"), ("sft", "s")):
        idx = [i for i, x in enumerate(methods) if x == m]
        ax.plot([from_drift[i] for i in idx], [measured[i] for i in idx], mark, label=f"{m}: from per-weight drift")
        ax.plot([from_regime[i] for i in idx], [measured[i] for i in idx], mark, mfc="none", alpha=0.6,
                label=f"{m}: from lr, steps, sign consistency")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlabel("predicted bf16 sparsity (share unchanged)")
    ax.set_ylabel("measured bf16 sparsity (share unchanged)")
    ax.set_title(f"Sparsity predictor: R^2 {r2_drift:.3f} (drift), {r2_regime:.3f} (regime only)", fontsize=9)
    ax.legend(fontsize=6)
    return fig


def _threshold_lines(ax, floor: float, margin: float | None = None) -> None:
    """The rule's floor (dashed red) and, if given, the equivalence margin +-``margin`` (dotted grey) on a
    difference axis."""
    ax.axhline(0.0, color="k", lw=0.6)
    ax.axhline(floor, color="C3", ls="--", lw=1, label=f"floor {floor:+g}")
    for m in () if margin is None else (-margin, margin):
        ax.axhline(m, color="0.4", ls=":", lw=1, label=f"margin +-{margin:g}" if m > 0 else None)


def phase_plot(name: str, label: str, word: str, rl, sft, bins, bin_decades: float, pooled, floor: float,
               margin: float, diff_label: str, bands=None):
    """One metric against the drift ratio, RL and SFT, the compared drift bins shaded (left: ``rl`` and ``sft`` are
    (drift ratios, values); ``bands`` the paper's (RL, SFT) bands); right: the per-bin RL-minus-SFT differences
    (``bins``: ``verify.stats.Bin``, +-1.96 Welch SE), their random-effects ``pooled`` 95 % interval, the rule's
    ``floor`` and the equivalence ``margin``."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    if bands is not None:
        ax.axhspan(*bands[0], color="C0", alpha=0.12, label="paper: RL checkpoints")
        ax.axhspan(*bands[1], color="C1", alpha=0.12, label="paper: SFT checkpoints")
    ax.scatter(*rl, c="C0", s=16, label="RL")
    ax.scatter(*sft, c="C1", marker="s", s=16, label="SFT")
    for b in bins:
        ax.axvspan(10 ** b.lo, 10 ** (b.lo + bin_decades), color="0.9", zorder=0)
    ax.set_xscale("log")
    if name == "curvature":
        ax.set_yscale("log")
    ax.set_xlabel("drift ratio: median |w_T - w_0| / half-ULP (log)")
    ax.set_ylabel(label, fontsize=8)
    ax.set_title(f"{name} (grey: bins compared)", fontsize=9)
    ax.legend(fontsize=6)
    centres = [10 ** (b.lo + bin_decades / 2) for b in bins]
    bx.errorbar(centres, [b.diff for b in bins], yerr=[1.96 * np.sqrt(b.variance) for b in bins], fmt="o", ms=4,
                capsize=2, label="per bin (+-1.96 Welch SE)")
    if np.isfinite(pooled.mean):
        lo, hi = pooled.bounds()
        bx.axhspan(lo, hi, color="C2", alpha=0.2, label=f"pooled 95 % (random effects) {pooled.text('+.3g')}")
    _threshold_lines(bx, floor, margin)
    bx.set_xscale("log")
    bx.set_xlabel("drift ratio of the bin (log)")
    bx.set_ylabel(diff_label, fontsize=8)
    bx.set_title(word, fontsize=8)
    bx.legend(fontsize=6)
    fig.tight_layout()
    return fig


def against_width(widths, columns: dict, rl_band, floor_slope: float):
    """Metrics of matched-gain RL runs against d_model (log2), one panel each: ``columns`` maps a metric name to
    (axis label, per-run values); on the sparsity panel the paper's RL band ``rl_band``, the OLS fit and a line of
    the rule's floor slope ``floor_slope`` (per doubling) through the fit's centre."""
    fig, axes = plt.subplots(1, len(columns), figsize=(11, 3.4))
    for ax, (key, (label, values)) in zip(axes, columns.items()):
        ax.scatter(widths, values, s=18)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("d_model (log2)")
        ax.set_ylabel(label, fontsize=8)
        if key == "sparsity":
            ax.axhspan(*rl_band, color="C0", alpha=0.12, label="paper RL band")
            lx, y = np.log2(np.asarray(widths, float)), np.asarray(values, float)
            ok = np.isfinite(lx) & np.isfinite(y)
            if ok.sum() >= 2 and np.ptp(lx[ok]) > 0:
                slope, icpt = np.polyfit(lx[ok], y[ok], 1)
                grid = np.linspace(lx[ok].min(), lx[ok].max(), 20)
                ax.plot(2 ** grid, icpt + slope * grid, "C0-", lw=1, label=f"OLS fit ({slope:+.3f} per doubling)")
                centre = lx[ok].mean()
                ax.plot(2 ** grid, icpt + slope * centre + floor_slope * (grid - centre), "C3--", lw=1,
                        label=f"floor slope {floor_slope:+g} per doubling")
            ax.legend(fontsize=6)
    fig.suptitle("RL at matched gain against width", fontsize=9)
    fig.tight_layout()
    return fig


def sparsity_by_optimizer(table: dict, onpolicy, diffs: dict, floor: float):
    """Left: bf16 sparsity at matched gain per optimizer, RL and SFT dots per seed, on-policy SFT beside them (``table``
    maps an optimizer name to {'rl': values, 'sft': values}). Right: RL minus SFT per seed and its 95 % interval per
    optimizer (``diffs``: name -> ``verify.rules.Interval``) against the rule's ``floor``."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(table)
    for i, name in enumerate(names):
        for j, (m, mark) in enumerate((("rl", "o"), ("sft", "s"))):
            ax.scatter([i + 0.15 * (j - 0.5)] * len(table[name][m]), table[name][m], marker=mark, c=f"C{j}",
                       label=m.upper() if i == 0 else None)
    ax.scatter([len(names)] * len(onpolicy), onpolicy, marker="^", c="C2", label="on-policy SFT (AdamW)")
    ax.set_xticks(range(len(names) + 1), names + ["on-policy SFT"], fontsize=7)
    ax.set_ylabel("bf16 sparsity (share unchanged)")
    ax.set_xlabel("optimizer")
    ax.set_title("Sparsity at matched gain under three optimizers", fontsize=9)
    ax.legend(fontsize=6)
    for i, (name, iv) in enumerate(diffs.items()):
        bx.scatter([i] * iv.n, iv.values, s=14, c="C0", alpha=0.6)
        if np.isfinite(iv.mean):
            lo, hi = iv.bounds()
            bx.errorbar([i + 0.2], [iv.mean], yerr=[[iv.mean - lo], [hi - iv.mean]], fmt="s", c="k", capsize=3,
                        label="mean, 95 % interval" if i == 0 else None)
    _threshold_lines(bx, floor)
    bx.set_xticks(range(len(diffs)), list(diffs), fontsize=7)
    bx.set_ylabel("RL - SFT bf16 sparsity (per seed)", fontsize=8)
    bx.set_title("the rule: 95 % interval wholly above the floor", fontsize=9)
    bx.legend(fontsize=6)
    fig.tight_layout()
    return fig
