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


def consensus_maps(cons: dict, block: str, runs: int, result: str):
    """The consensus map of every matrix of one block (share of runs that changed each weight); ``result`` goes
    into the title."""
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
    fig.suptitle(f"C3: consensus maps of bf16 changes ({block}); {result}", fontsize=9)
    return fig


def excess_by_matrix(names, series: dict, floor: float, ylabel: str, title: str):
    """Per block matrix, one bar per set of runs (``series`` maps a label to one value per matrix), with the rule's
    floor drawn as a dashed line."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(names))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x - 0.4 + (i + 0.5) * width, values, width, label=label)
    ax.axhline(floor, color="k", ls="--", lw=0.9, label=f"floor {floor:g} (a priori)")
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xticks(x, names, rotation=30, fontsize=7)
    ax.set_xlabel("block matrix")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return fig


def outcome_intervals(outcomes: dict, ylabel: str, title: str):
    """One column per labelled rule outcome (``verify.rules.Outcome``): its per-unit values, its mean with the 95 %
    interval, and its threshold (dashed: a floor; dotted: +- an equivalence margin)."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(outcomes), 3.6))
    drawn = set()
    for i, (label, o) in enumerate(outcomes.items()):
        iv = o.interval
        lo, hi = iv.bounds()
        ax.scatter(np.full(len(iv.values), i) + 0.12, iv.values, s=10, color="gray", zorder=2)
        if np.isfinite(iv.mean):
            ax.errorbar(i, iv.mean, yerr=[[iv.mean - lo], [hi - iv.mean]], fmt="o", color=f"C{i}", capsize=4, zorder=3)
        ax.annotate(o.cell, (i, hi if np.isfinite(hi) else 0), fontsize=6, ha="center", va="bottom")
        key = (o.kind, o.threshold)
        if key in drawn or not np.isfinite(o.threshold):
            continue
        drawn.add(key)
        if o.kind == "margin":
            for t in (-o.threshold, o.threshold):
                ax.axhline(t, color="k", ls=":", lw=0.9)
            ax.plot([], [], color="k", ls=":", label=f"margin +-{o.threshold:g} ({o.source})")
        else:
            ax.axhline(o.threshold, color="k", ls="--", lw=0.9, label=f"floor {o.threshold:g} ({o.source})")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xticks(range(len(outcomes)), list(outcomes), rotation=20, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
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
    matrices: ``bars[region][frame]`` holds one ``verify.rules.Interval`` per (optimizer, edit) of ``keys``;
    ``references[region]`` the unedited pairs' excess per key."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    x = np.arange(len(keys))
    for ax, region_name in zip(axes, ("edited", "untouched")):
        for off, frame, label in ((-0.2, "raw", "raw coordinates"), (0.2, "back", "mapped back to the original frame")):
            vals = bars[region_name][frame]
            lo_hi = np.array([v.bounds() for v in vals]).reshape(-1, 2)
            mean = np.array([v.mean for v in vals])
            ax.bar(x + off, mean, 0.4, label=label, yerr=[mean - lo_hi[:, 0], lo_hi[:, 1] - mean], capsize=2)
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
    interval. ``gain_curves`` / ``kl_curves`` map a kind to (steps, mean values); ``final_gains`` to a
    ``verify.rules.Interval``."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, k in enumerate(kinds):
        color = f"C{i}"
        axes[0].plot(*gain_curves[k], "o-", ms=3, color=color, label=k)
        axes[1].plot(*kl_curves[k], color=color, label=k)
        e = final_gains[k]
        lo, hi = e.bounds()
        axes[2].bar(i, e.mean, yerr=[[e.mean - lo], [hi - e.mean]], color=color, capsize=3)
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
