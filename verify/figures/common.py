"""Figure helpers shared by the claims: saving a figure next to the report, and bars of two runs per seed."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from toy_models.checkpoint import temporary_name


def save_figure(fig, ctx, claim_id: str) -> str:
    """Save ``fig`` as figures/<claim_id>.png atomically; returns the path relative to the report."""
    path = ctx.figures / f"{claim_id.replace('.', '_')}.png"
    tmp = temporary_name(path)  # unique: two verify processes may write the same figure at once
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return str(path.relative_to(ctx.out_dir))


def paired_seed_bars(seeds, left, right, labels: tuple[str, str], ylabel: str, title: str,
                     ylim=None):
    """One figure of two bars per seed (e.g. RL against SFT); returns (fig, ax) for extra marks, unsaved."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = range(len(seeds))
    ax.bar([i - 0.2 for i in x], left, 0.4, label=labels[0])
    ax.bar([i + 0.2 for i in x], right, 0.4, label=labels[1])
    ax.set_xticks(list(x), [f"seed {s}" for s in seeds])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return fig, ax
