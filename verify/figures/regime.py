"""Figures of the regime map: predicted against measured sparsity, metrics against the drift ratio (phase plots),
metrics against width and sparsity under three optimizers."""

from __future__ import annotations

import matplotlib.pyplot as plt


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


def phase_plot(name: str, label: str, word: str, rl, sft, bins, bin_decades: float, bands=None):
    """One metric against the drift ratio, RL and SFT, the compared drift bins shaded: ``rl`` and ``sft`` are
    (drift ratios, values); ``bins`` the lower log10 edges of the bins; ``bands`` the paper's (RL, SFT) bands."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if bands is not None:
        ax.axhspan(*bands[0], color="C0", alpha=0.12, label="paper: RL checkpoints")
        ax.axhspan(*bands[1], color="C1", alpha=0.12, label="paper: SFT checkpoints")
    ax.scatter(*rl, c="C0", s=16, label="RL")
    ax.scatter(*sft, c="C1", marker="s", s=16, label="SFT")
    for lo in bins:
        ax.axvspan(10 ** lo, 10 ** (lo + bin_decades), color="0.9", zorder=0)
    ax.set_xscale("log")
    if name == "curvature":
        ax.set_yscale("log")
    ax.set_xlabel("drift ratio: median |w_T - w_0| / half-ULP (log)")
    ax.set_ylabel(label, fontsize=8)
    ax.set_title(f"{name}: {word} (grey: bins compared)", fontsize=9)
    ax.legend(fontsize=6)
    return fig


def against_width(widths, columns: dict, rl_band):
    """Metrics of matched-gain RL runs against d_model (log2), one panel each: ``columns`` maps a metric name to
    (axis label, per-run values); the paper's RL band ``rl_band`` on the sparsity panel."""
    fig, axes = plt.subplots(1, len(columns), figsize=(11, 3.4))
    for ax, (key, (label, values)) in zip(axes, columns.items()):
        ax.scatter(widths, values, s=18)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("d_model (log2)")
        ax.set_ylabel(label, fontsize=8)
        if key == "sparsity":
            ax.axhspan(*rl_band, color="C0", alpha=0.12, label="paper RL band")
            ax.legend(fontsize=6)
    fig.suptitle("RL at matched gain against width", fontsize=9)
    return fig


def sparsity_by_optimizer(table: dict, onpolicy):
    """bf16 sparsity at matched gain per optimizer, RL and SFT dots per seed, on-policy SFT beside them:
    ``table`` maps an optimizer name to {'rl': values, 'sft': values}."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
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
    return fig
