"""Figures of the preference and forgetting claims (C13, forgetting), drawn from numbers, each with its rule's
threshold: the equivalence band, the floor."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter


def contrasts_against_margins(contrasts: dict, margins: dict, labels: dict, title: str):
    """One panel per signature: per-seed contrasts of each method against RL (``contrasts`` {signature: {method:
    values}}) as dots, the equivalence band +-margin shaded, 0 as a line."""
    names = list(contrasts)
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 3.2))
    for ax, name in zip(np.atleast_1d(axes), names):
        m = margins[name]
        ax.axhspan(-m, m, color="0.85", label=f"+-{m:g} (margin)")
        ax.axhline(0, color="0.4", lw=0.6)
        for i, (method, values) in enumerate(contrasts[name].items()):
            v = np.asarray(values, float)
            ax.plot(np.full(v.size, i) + np.linspace(-0.1, 0.1, max(v.size, 1))[: v.size], v, "o", ms=4, label=method)
        ax.set_xticks(range(len(contrasts[name])), list(contrasts[name]), fontsize=7, rotation=30)
        ax.set_title(labels[name], fontsize=7)
    np.atleast_1d(axes)[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def forgetting_by_method(forgetting: dict, differences, floor: float):
    """Left: forgetting of every method, one dot per seed; right: per-seed SFT - RL forgetting with the floor."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [3, 1]})
    for i, (method, values) in enumerate(forgetting.items()):
        v = np.asarray(values, float)
        a.plot(np.full(v.size, i), v, "o", ms=4)
    a.axhline(0, color="0.4", lw=0.6)
    a.set_xticks(range(len(forgetting)), list(forgetting), fontsize=7, rotation=20)
    a.set_ylabel("forgetting: mean drop of untrained tasks' pass rate")
    b.plot(np.zeros(len(differences)), differences, "o", ms=4, color="C3")
    b.axhline(floor, color="C3", ls="--", lw=1, label=f"floor {floor:g}")
    b.axhline(0, color="0.4", lw=0.6)
    b.set_xticks([0], ["SFT - RL"])
    b.legend(fontsize=6)
    fig.suptitle("Forgetting at matched gain on the trained task", fontsize=9)
    fig.tight_layout()
    return fig


def forgetting_against_predictors(forget, predictors: dict, groups, rhos: dict):
    """One panel per predictor: forgetting against the predictor (log x where all values are positive), runs coloured
    by role, Spearman rho in the title."""
    fig, axes = plt.subplots(1, len(predictors), figsize=(3 * len(predictors), 3.2), sharey=True)
    roles = list(dict.fromkeys(groups))
    for ax, (name, x) in zip(np.atleast_1d(axes), predictors.items()):
        x = np.asarray(x, float)
        for j, role in enumerate(roles):
            sel = np.asarray([g == role for g in groups])
            ax.plot(x[sel], np.asarray(forget, float)[sel], "o", ms=4, color=f"C{j}", label=role)
        if np.all(x > 0):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{name}: rho {rhos[name]:+.2f}", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("forgetting")
    np.atleast_1d(axes)[0].legend(fontsize=5)
    fig.tight_layout()
    return fig


def rho_differences(names, differences: dict, floor: float):
    """Per other predictor: the jackknife interval of rho(KL) - rho(X) (mean, 95 % bounds) with the floor."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for i, name in enumerate(names):
        mean, lo, hi = differences[name]
        ax.errorbar([i], [mean], yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=4)
    ax.axhline(floor, color="C3", ls="--", lw=1, label=f"floor {floor:g}")
    ax.axhline(0, color="0.4", lw=0.6)
    ax.set_xticks(range(len(names)), list(names), fontsize=7)
    ax.set_ylabel("rho(KL, forgetting) - rho(X, forgetting)")
    ax.set_title("Does KL predict forgetting best? (95 % jackknife intervals)", fontsize=9)
    ax.legend(fontsize=6)
    return fig
