"""Figures of the case studies: overlap across runs and consensus maps (C3), the changed mask over training (C4),
edited against unedited runs (C12) and masked RL (C14)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# ----------------------------------------------------------------------------------------------
# C3


def jaccard_bars(names, rl_j, magnitude, bernoulli, sft_j, random_j, runs: int):
    """Per block matrix: RL's mean pairwise Jaccard beside its two chance levels, SFT's and random-init RL's as marks."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(names))
    ax.bar(x - 0.27, rl_j, 0.27, label="RL: mean pairwise Jaccard")
    ax.bar(x, magnitude, 0.27, label="magnitude-matched level")
    ax.bar(x + 0.27, bernoulli, 0.27, label="Bernoulli level pq/(p+q-pq)")
    ax.scatter(x - 0.27, sft_j, marker="v", color="k", zorder=3, label="SFT: mean pairwise Jaccard")
    ax.scatter(x - 0.27, random_j, marker="x", color="r", zorder=3, label="RL from random init: mean pairwise Jaccard")
    ax.set_xticks(x, names, rotation=30, fontsize=7)
    ax.set_xlabel("block matrix")
    ax.set_ylabel("Jaccard index of changed masks (dimensionless)", fontsize=8)
    ax.set_title(f"C3: overlap of bf16 changed masks across {runs} RL runs from one base", fontsize=9)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="lower right")
    return fig


def consensus_maps(cons: dict, block: str, runs: int, p_independence: float, p_magnitude: float):
    """The consensus map of every matrix of one block (share of runs that changed each weight)."""
    shown = [n for n in cons if n.startswith(block + "/")]
    fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(3.0 * ((len(shown) + 1) // 2), 6.2))
    for ax, n in zip(axes.ravel(), shown):
        im = ax.imshow(cons[n], vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_title(f"{n}", fontsize=8)
        ax.set_xlabel("input unit (column index)", fontsize=7)
        ax.set_ylabel("output unit (row index)", fontsize=7)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label=f"share of the {runs} RL runs that changed the weight")
    fig.suptitle(f"C3: consensus maps of bf16 changes ({block}); p(rows QKV / cols O) independence "
                 f"{p_independence:.3f}, magnitude {p_magnitude:.3f}", fontsize=9)
    return fig


def line_profiles(profiles: dict):
    """Sorted row (Q, K, V) or column (O) consensus ratios: ``profiles`` maps a label to its sorted values."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, values in profiles.items():
        ax.plot(values, label=label)
    ax.set_xlabel("row (Q, K, V) or column (O), sorted by consensus ratio")
    ax.set_ylabel("mean consensus of the row / column (share of runs)", fontsize=8)
    ax.set_title("C3: row and column update ratios of the consensus (sorted)", fontsize=9)
    ax.legend(fontsize=6)
    return fig


# ----------------------------------------------------------------------------------------------
# C4


def over_training(series: dict, threshold: float):
    """Three panels against training progress: profile correlation with the final one, Jaccard with the final
    mask, share of the final changed set present; ``series`` maps 'RL' / 'SFT' to (steps, rows per seed, total)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for method, color in (("RL", "C0"), ("SFT", "C3")):
        steps, rows_list, total = series[method]
        frac = np.asarray(steps) / total
        for key, ax in zip(("corr", "jaccard", "share_of_final"), axes):
            vals = np.array([[r[key] for r in rows] for rows in rows_list])
            for v in vals:
                ax.plot(frac, v, color=color, alpha=0.3, lw=0.8)
            ax.plot(frac, np.nanmean(vals, axis=0), "o-", color=color, ms=3, label=f"{method} (mean of {len(vals)} seeds)")
    axes[0].axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold}")
    axes[0].axvline(0.25, color="gray", ls=":", lw=0.8)
    for ax, lab in zip(axes, ("Pearson r of row/column profile with final", "Jaccard(M_t, M_final)",
                              "share of final changed set already changed")):
        ax.set_xlabel("training progress t / T (fraction)")
        ax.set_ylabel(lab + " (dimensionless)", fontsize=7)
        ax.legend(fontsize=6)
    axes[0].set_title("C4: is the row/column profile stable?", fontsize=9)
    axes[1].set_title("C4: changed mask at t vs final", fontsize=9)
    axes[2].set_title("C4: how early the final pattern appears", fontsize=9)
    return fig


def row_ratios_over_time(panels, name: str):
    """Row update ratios of one matrix at every snapshot, one panel per method: ``panels`` holds
    (method, seed, steps, image (rows, snapshots))."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (method, seed, steps, img) in zip(axes, panels):
        im = ax.imshow(img, aspect="auto", vmin=0, vmax=1, cmap="magma", interpolation="nearest",
                       extent=(steps[0] - 0.5 * (steps[1] - steps[0]), steps[-1] + 0.5 * (steps[1] - steps[0]),
                               img.shape[0] - 0.5, -0.5))
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{name} row (output unit)", fontsize=8)
        ax.set_title(f"C4: row update ratios of {name} over time, {method} seed {seed}", fontsize=8)
        fig.colorbar(im, ax=ax, label="row update ratio (share changed)")
    return fig


# ----------------------------------------------------------------------------------------------
# C12


def edited_against_unedited(keys, bars: dict, references: dict, layer: int):
    """Excess Jaccard of edited against unedited runs, raw and mapped back, in the edited and the untouched
    matrices: ``bars[region][frame]`` holds one Estimate per (optimizer, edit) of ``keys``; ``references[region]``
    the unedited pairs' excess per key."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    x = np.arange(len(keys))
    for ax, region_name in zip(axes, ("edited", "untouched")):
        for off, frame, label in ((-0.2, "raw", "raw coordinates"), (0.2, "back", "mapped back to the original frame")):
            vals = bars[region_name][frame]
            ax.bar(x + off, [v.mean for v in vals], 0.4, label=label,
                   yerr=[[v.mean - v.low for v in vals], [v.high - v.mean for v in vals]], capsize=2)
        ax.scatter(x, references[region_name], marker="_", s=400, color="k", zorder=3,
                   label="unedited vs unedited (same matrices)")
        ax.axhline(0, color="gray", lw=0.8, ls=":")
        ax.set_xticks(x, [f"{o}\n{k}" for o, k in keys], fontsize=7)
        ax.set_xlabel("optimizer and edit")
        ax.set_title(f"C12: {region_name} matrices (block {layer} edited)", fontsize=9)
    axes[0].set_ylabel("excess Jaccard J - pq/(p+q-pq) (dimensionless; 0 = random level)", fontsize=8)
    axes[0].legend(fontsize=6)
    return fig


# ----------------------------------------------------------------------------------------------
# C14


def masked_runs(kinds, gain_curves: dict, kl_curves: dict, final_gains: dict, seeds: int, steps: int):
    """Three panels per mask kind: seed-mean gain curve, seed-mean KL-to-base curve, final gain with its
    interval. ``gain_curves`` / ``kl_curves`` map a kind to (steps, mean values); ``final_gains`` to an Estimate."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, k in enumerate(kinds):
        color = f"C{i}"
        axes[0].plot(*gain_curves[k], "o-", ms=3, color=color, label=k)
        axes[1].plot(*kl_curves[k], color=color, label=k)
        e = final_gains[k]
        axes[2].bar(i, e.mean, yerr=[[e.mean - e.low], [e.high - e.mean]], color=color, capsize=3)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("held-out accuracy gain over the base (fraction)", fontsize=8)
    axes[0].set_title(f"C14: task gain under fixed masks (mean of {seeds} seeds)", fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("exact KL(pi || base) on the probe (nats/token)", fontsize=8)
    axes[1].set_title("C14: KL to the base (the paper's Figure 9)", fontsize=9)
    axes[2].set_xticks(range(len(kinds)), kinds, rotation=30, fontsize=7)
    axes[2].set_xlabel("mask")
    axes[2].set_ylabel(f"final gain after {steps} steps (fraction, 95 % CI)", fontsize=8)
    axes[2].set_title("C14: final gain at equal steps", fontsize=9)
    for ax in axes[:2]:
        ax.legend(fontsize=6)
    return fig
