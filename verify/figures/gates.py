"""Figures of the Gate I-III claims and of the random-base control, drawn from numbers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from verify.figures.common import paired_seed_bars

# ----------------------------------------------------------------------------------------------
# Gate I


def step_kl_against_bound(series, title: str):
    """Exact step KL against a per-step bound on log axes, the bound as the diagonal: ``series`` holds
    (label, bound per step, exact step KL per step)."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for label, bound, kl in series:
        ax.loglog(bound, kl, ".", ms=3, label=label)
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="bound")
    ax.set_xlabel("bound (nats per sequence)")
    ax.set_ylabel("exact step KL(pi_t+1 || pi_t) (nats per sequence)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return fig


def step_kl_against_fisher(series):
    """Exact step KL against 1/2 D^T F D of the same step: ``series`` holds (method, seed, quad, kl) per run."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for method, seed, quad, kl in series:
        ax.loglog(quad, kl, "." if method == "rl" else "x", ms=3, label=f"{method} seed {seed}")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("1/2 D^T F D (nats per sequence)")
    ax.set_ylabel("exact step KL (nats per sequence)")
    ax.set_title("Prop 3.2: exact step KL vs its Fisher quadratic form", fontsize=9)
    ax.legend(fontsize=5, ncol=2)
    return fig


def kl_to_base_curves(curves: dict):
    """Exact KL to the base along training, one line per run: ``curves`` maps a method label to a list of
    (steps, KL) per run; the first label is drawn in C0, the second in C1."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for j, (name, runs) in enumerate(curves.items()):
        for i, (steps, kl) in enumerate(runs):
            ax.semilogy(steps, [max(x, 1e-9) for x in kl], "-", lw=1, color=f"C{j}", label=name if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("exact KL(pi || base) on the probe (nats/token)")
    ax.set_title("Distance from the base until the matched gain", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def weight_leash_bars(seeds, norms, bounds):
    """|dW|_F of the unembedding against its per-layer leash, per seed (log scale; bounds capped at 1e3)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(norms))
    ax.bar(x - 0.2, norms, 0.4, label="|dW|_F (unembedding)")
    ax.bar(x + 0.2, [min(b, 1e3) for b in bounds], 0.4, label="sqrt(2 delta_W / mu_W)")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"seed {s}" for s in seeds])
    ax.set_ylabel("Frobenius norm (parameter units)")
    ax.set_title("Prop 3.2 per-layer leash with the Schur complement", fontsize=9)
    ax.legend(fontsize=7)
    return fig


# ----------------------------------------------------------------------------------------------
# Gate II


def bound_tightness(tightness: dict, labels, pairs: int):
    """Tightness lhs / rhs of every bound over the real (W0, W1) pairs (log scale, jittered), the bound at 1."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    rng = np.random.default_rng(0)
    for i, t in enumerate(tightness.values()):
        t = t[t > 0]
        if t.size:
            ax.scatter(i + rng.uniform(-0.2, 0.2, t.size), t, s=6, alpha=0.5)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="bound (lhs = rhs)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("tightness lhs / rhs (dimensionless, log)")
    ax.set_xlabel("bound")
    ax.set_title(f"C8: Gate II bounds on {pairs} real (W0, W1) pairs")
    ax.legend(fontsize=7)
    return fig


def paired_panels(seeds, panels, title: str):
    """One panel per metric of RL and SFT bars per seed: ``panels`` holds (RL values, SFT values, y label)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5))
    x = np.arange(len(seeds))
    for ax, (a, b, lab) in zip(np.atleast_1d(axes), panels):
        ax.bar(x - 0.2, a, 0.4, label="RL")
        ax.bar(x + 0.2, b, 0.4, label="SFT")
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_xlabel("seed")
        ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def mask_share_curves(alphas, curves: dict):
    """Share of changed weights inside the principal and the low-magnitude masks against the mask share alpha:
    ``curves`` maps 'RL' / 'SFT' to an array (alphas, 2) of (principal, low-magnitude) shares."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for label, ls in (("RL", "-"), ("SFT", "--")):
        ax.plot(alphas, curves[label][:, 0], "o" + ls, label=f"{label}: principal mask")
        ax.plot(alphas, curves[label][:, 1], "s" + ls, label=f"{label}: low-magnitude mask")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random level (alpha)")
    ax.set_xlabel("mask share alpha")
    ax.set_ylabel("share of changed weights inside the mask")
    ax.set_title("C11: where the bf16-visible changes land (block matrices)")
    ax.legend(fontsize=6)
    return fig


def energy_bars(seeds, rl, sft, k: int):
    """Principal energy / isotropic level of RL and SFT per seed, the isotropic level at 1."""
    fig, ax = paired_seed_bars(seeds, rl, sft, ("RL", "SFT"), "principal energy fraction / k^2/(mn) (dimensionless)",
                               f"C11: energy of dW in the top-{k} singular subspaces (fp32 master)")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="isotropic level k^2/(mn)")
    ax.set_xlabel("seed")
    ax.set_ylabel("principal energy fraction / k^2/(mn) (dimensionless)", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def curvature_dots(columns: dict):
    """Fisher Rayleigh quotient of several directions, one dot per seed and the mean as a bar: ``columns`` maps a
    direction's label to its per-seed values."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, values in enumerate(columns.values()):
        ax.scatter(np.full(len(values), i), values, s=18)
        ax.plot([i - 0.25, i + 0.25], [np.mean(values)] * 2, "k-")
    ax.set_yscale("log")
    ax.set_xticks(range(len(columns)), list(columns), rotation=25, fontsize=7)
    ax.set_ylabel("Fisher Rayleigh quotient d^T F d / |d|^2\n(nats/token per unit squared norm)", fontsize=8)
    ax.set_xlabel("direction (block matrices only)")
    ax.set_title("Curvature of update directions at the base (probe set; dots = seeds)", fontsize=9)
    return fig


# ----------------------------------------------------------------------------------------------
# Gate III and the control


def sparsity_bars(seeds, rl_bf16, sft_bf16, rl_fp32, sft_fp32):
    """bf16-export sparsity of RL and SFT per seed, the fp32-storage control as marks."""
    fig, ax = paired_seed_bars(seeds, rl_bf16, sft_bf16, ("RL (bf16 export)", "SFT (bf16 export)"),
                               "update sparsity (share of weights unchanged)",
                               "C1: bf16 update sparsity, RL vs SFT at matched gain", (0, 1))
    x = np.arange(len(seeds))
    ax.plot(x - 0.2, rl_fp32, "k_", ms=14, label="fp32 storage (control)")
    ax.plot(x + 0.2, sft_fp32, "k_", ms=14)
    ax.legend(fontsize=7)
    return fig


def sparsity_against_lr(lrs, bf16, fp32, steps: int):
    """Seed-mean sparsity against the learning rate, bf16 export and fp32 storage."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx(lrs, bf16, "o-", label="bf16 export")
    ax.semilogx(lrs, fp32, "s--", label="fp32 storage (control, float32 bits)")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("update sparsity (share unchanged)")
    ax.set_title(f"C6: RL sparsity vs learning rate ({steps} steps)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return fig


def probe_errors(counts: dict):
    """Share of all weights on which each probe errs against bitwise bf16 truth."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    n = counts["n"]
    ax.bar(["relative 1e-3\nvs bitwise", "absolute 1e-5\nfalse 'changed'", "absolute 1e-5\nfalse 'equal'"],
           [counts["relative_mismatch"] / n, counts["absolute_false_changed"] / n, counts["absolute_false_equal"] / n])
    ax.set_ylabel("share of all weights")
    ax.set_title("C2: probe errors against bitwise bf16 truth")
    return fig


def labelled_seed_bars(seeds, left, right, labels: tuple[str, str], ylabel: str, title: str, ylim=None,
                       zero_line: bool = False):
    """Two bars per seed with a legend (and a line at 0 if ``zero_line``)."""
    fig, ax = paired_seed_bars(seeds, left, right, labels, ylabel, title, ylim)
    if zero_line:
        ax.axhline(0, color="k", lw=0.8)
    ax.legend(fontsize=7)
    return fig
