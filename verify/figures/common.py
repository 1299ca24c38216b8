"""Figure helpers shared by the claims: saving a figure next to the report, bars of two runs per seed, and the
per-unit values of a rule's statistic with its threshold drawn."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

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


def rule_dots(columns: dict, ylabel: str, title: str, *, floor: float | None = None, margin: float | None = None,
              floor_label: str = "floor of the rule", floors: dict | None = None,
              band: tuple[float, float] | None = None, band_label: str = "paper's band"):
    """Per-unit values of a rule's statistic, one column of dots per input (seeds; the mean as a bar), with the
    rule's threshold drawn: ``floor`` as a dashed line (``floors`` {label: value}: several), ``margin`` as the shaded equivalence band +-margin, and the
    paper's ``band`` (low, high) where it gives one. ``columns`` maps a label to its per-unit values (non-finite
    values are left out of the plot, not of the rule)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(columns) + 2), 3.8))
    for i, values in enumerate(columns.values()):
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
        ax.scatter(np.full(v.size, i), v, s=18, zorder=3)
        if v.size:
            ax.plot([i - 0.25, i + 0.25], [v.mean()] * 2, "k-", lw=1.5, zorder=4)
    ax.axhline(0.0, color="0.6", lw=0.8)
    if margin is not None:
        ax.axhspan(-margin, margin, color="C2", alpha=0.15, label=f"equivalence margin +-{margin:g}")
    lines = {**({floor_label: floor} if floor is not None else {}), **(floors or {})}
    for j, (label, y) in enumerate(lines.items()):
        ax.axhline(y, color=("C3", "C4", "C5")[j % 3], ls="--", lw=1.2, label=f"{label} ({y:g})")
    if band is not None:
        ax.axhspan(band[0], band[1], color="C1", alpha=0.12, label=band_label)
    ax.set_xticks(range(len(columns)), list(columns), rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    if lines or margin is not None or band is not None:
        ax.legend(fontsize=6)
    return fig


COMPARATOR_LABELS = {"equal size": "SFT equal size", "customary": "SFT customary", "placebo": "placebo",
                     "next seed": "next-seed RL"}


def comparison_dots(values: dict, floor: float, ylabel: str, title: str, extra: dict | None = None):
    """The rule figure of a claim on RL against its comparators: ``values`` maps a statistic's name to its per-seed
    values per comparator (``verify.comparison.Comparison.values``); ``extra`` adds columns (e.g. a positive
    control); the rule's floor drawn."""
    cols = {f"{name}: {COMPARATOR_LABELS.get(k, k)}": v for name, per in values.items() for k, v in per.items()}
    return rule_dots({**cols, **(extra or {})}, ylabel, title, floor=floor)
