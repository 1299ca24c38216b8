"""Figures of the adapter claims (C15, C16), drawn from the grid's table (``verify.measures.adapter_grid.Grid``):
gain against learning rate per rank, the collapse map, the distance from the base, and the rank-r energy share
of full RL's update."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from verify.experiments.adapters import FULL
from verify.knobs import ADAPTER_KINDS as KINDS
from verify.measures.adapter_grid import arm_label
from verify.stats import over_seeds


def gain_against_lr(grid, title: str):
    """Held-out gain against learning rate, one panel per rank, a line per adapter kind, full fine-tuning on every
    panel; crosses mark cells where some seed collapsed."""
    rks = sorted({r for k, r in grid.arms if k != FULL})
    fig, axes = plt.subplots(1, len(rks), figsize=(4.6 * len(rks), 3.6), squeeze=False)
    for ax, rank in zip(axes[0], rks):
        for i, (kind, r) in enumerate([a for a in grid.arms if a[1] == rank] + [a for a in grid.arms if a[0] == FULL]):
            lrs = grid.lrs(kind, r)
            est = [over_seeds(grid.values(kind, r, lr, "gain")) for lr in lrs]
            m = np.array([e.mean for e in est])
            err = np.array([[e.mean - e.low for e in est], [e.high - e.mean for e in est]])
            style = dict(color="k", ls="--") if kind == FULL else dict(color=f"C{KINDS.index(kind) if kind in KINDS else i}")
            ax.errorbar(lrs, m, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2, label=arm_label(kind, r), **style)
            hit = [lr for lr in lrs if any(grid.values(kind, r, lr, "collapsed"))]
            ax.plot(hit, [m[lrs.index(lr)] for lr in hit], "x", color=style["color"], ms=9, mew=2)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (AdamW, log scale)")
        ax.set_ylabel(f"held-out accuracy gain after {grid.steps} steps\n(fraction of problems; mean, 95 % CI)", fontsize=8)
        ax.set_title(f"rank {rank}", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title + " (x: some seed collapsed)", fontsize=9)
    fig.tight_layout()
    return fig


def collapse_map(grid, title: str):
    """Collapse map: share of seeds collapsed per (arm, learning rate), annotated with the median onset step."""
    all_lrs = sorted({c[2] for c in grid.cells})
    arms = grid.arms
    share = np.full((len(arms), len(all_lrs)), np.nan)
    fig, ax = plt.subplots(figsize=(1.1 * len(all_lrs) + 2.5, 0.45 * len(arms) + 1.6))
    for i, (kind, r) in enumerate(arms):
        for j, lr in enumerate(all_lrs):
            if lr not in grid.lrs(kind, r):
                continue
            c = grid.values(kind, r, lr, "collapsed")
            share[i, j] = float(np.mean(c))
            onset = [st for st, x in zip(grid.values(kind, r, lr, "collapse_step"), c) if x]
            ax.text(j, i, f"{int(np.median(onset))}" if onset else "", ha="center", va="center", fontsize=7)
    im = ax.imshow(np.ma.masked_invalid(share), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(all_lrs)), [f"{lr:g}" for lr in all_lrs], fontsize=7)
    ax.set_yticks(range(len(arms)), [arm_label(k, r) for k, r in arms], fontsize=7)
    ax.set_xlabel("learning rate (AdamW)")
    ax.set_ylabel("method")
    fig.colorbar(im, ax=ax, label="share of seeds collapsed")
    ax.set_title(title + " (number: median onset step)", fontsize=9)
    fig.tight_layout()
    return fig


def geometry_against_lr(grid, title: str):
    """Exact KL to the base, normalised spectral shift and largest top-k principal angle of the merged block
    matrices against learning rate, one line per arm."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = {"kl": "exact KL(pi || base) on the probe (nats/token)", "nss": "normalised spectral shift (dimensionless)",
              "angle": "largest top-k principal angle (degrees)"}
    for ax, key in zip(axes, ("kl", "nss", "angle")):
        for i, (kind, r) in enumerate(grid.arms):
            lrs = grid.lrs(kind, r)
            m = [float(np.mean(grid.values(kind, r, lr, key))) for lr in lrs]
            style = dict(color="k", ls="--") if kind == FULL else dict(color=f"C{KINDS.index(kind)}", ls=["-", ":", "-."][ranks_index(grid, r) % 3])
            ax.plot(lrs, m, marker="o", ms=3, label=arm_label(kind, r), **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate (AdamW, log scale)")
        ax.set_ylabel(labels[key], fontsize=8)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def ranks_index(grid, rank: int) -> int:
    """Position of ``rank`` among the grid's adapter ranks (line style of the geometry figure)."""
    return sorted({r for k, r in grid.arms if k != FULL}).index(rank)


def energy_share_curves(rs, curves, iso, seeds, lr: float):
    """Share of |dW|_F^2 in the top-r singular directions of full RL's update per seed, against the isotropic level."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for s, c in zip(seeds, curves):
        ax.plot(rs, [c[r] for r in rs], "o-", ms=3, alpha=0.7, label=f"full RL update, seed {s}")
    ax.plot(rs, [iso[r] for r in rs], "k--", label="isotropic Gaussian update, same shapes")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r of the approximation (log2)")
    ax.set_ylabel("share of |dW|_F^2 in the top-r singular\ndirections (mean over block matrices)", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"C16: how much of full RL's update rank r captures (lr {lr:g}, fp32 master)", fontsize=9)
    ax.legend(fontsize=6)
    return fig


def rank1_against_full(grid, arms, full_lr: float, r1_lr: float, steps: int, floor_gain: float):
    """Gain against learning rate of full RL, rank-1 LoRA and the grid's other LoRA ranks (``arms``: (kind, rank,
    line style)), the best rates marked, and ``floor_gain`` (full RL's best seed-mean gain minus the non-inferiority
    margin: the level the rank-1 gain must stay above)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind, r, style in arms:
        lrs = grid.lrs(kind, r)
        est = [over_seeds(grid.values(kind, r, lr, "gain")) for lr in lrs]
        err = np.array([[e.mean - e.low for e in est], [e.high - e.mean for e in est]])
        ax.errorbar(lrs, [e.mean for e in est], yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                    label=arm_label(kind, r), **style)
    ax.axvline(full_lr, color="k", lw=0.6)
    ax.axvline(r1_lr, color="C0", lw=0.6)
    ax.axhline(floor_gain, color="C3", ls="--", lw=1, label="full RL best gain - margin (non-inferiority floor)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (AdamW, log scale)")
    ax.set_ylabel(f"held-out accuracy gain after {steps} steps\n(fraction of problems; mean, 95 % CI)", fontsize=8)
    ax.set_title(f"C16: rank-1 LoRA vs full RL (best lr ratio {r1_lr / full_lr:.3g})", fontsize=9)
    ax.legend(fontsize=6)
    return fig


def pissa_minus_lora(per_rank: dict, interval, margin: float, title: str):
    """PiSSA - LoRA held-out gain (each at its best rate) per (rank, seed) pair, one column per rank (``per_rank``:
    rank -> per-seed differences); over all pairs the mean and 90 % interval (``interval``: the equivalence test's)
    against the margin +-``margin``."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (rank, values) in enumerate(per_rank.items()):
        ax.scatter([i] * len(values), values, s=16, c="C0", alpha=0.7, label="per seed" if i == 0 else None)
    if np.isfinite(interval.mean):
        lo, hi = interval.bounds(0.90)
        ax.errorbar([len(per_rank)], [interval.mean], yerr=[[interval.mean - lo], [hi - interval.mean]], fmt="s", c="k",
                    capsize=3, label="all pairs: mean, 90 % interval")
    ax.axhspan(-margin, margin, color="C2", alpha=0.12, label=f"equivalence margin +-{margin:g}")
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(per_rank) + 1), [f"rank {r}" for r in per_rank] + ["all"], fontsize=7)
    ax.set_ylabel("PiSSA - LoRA held-out gain\n(each at its best rate)", fontsize=8)
    ax.set_title("C15: " + title, fontsize=7)
    ax.legend(fontsize=6)
    return fig
