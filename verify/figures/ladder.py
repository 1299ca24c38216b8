"""Figure of the regime ladder (regime.ladder): what the target gain cost against parameters, per base and per rung,
the fitted trend extrapolated to published sizes, beside the published numbers and the rule's threshold."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from verify.rules import Interval

PANELS = {  # record key: (axis label, published value or band, log axis)
    "drift_ratio": ("drift ratio at the target gain (half-ULPs)", 0.4, True),
    "relative_update_norm": ("||dW|| / ||W|| (median over matrices)", 1e-3, True),
    "visible_share": ("per-step bf16-visible share (median step)", (0.01, 0.02), True),
    "sparsity": ("bf16 sparsity of the export", (0.36, 0.92), False),
}


def ladder_plot(rungs: dict, fits: dict, extent: tuple[float, float], published_size: float, threshold: float):
    """One panel per PANELS key: every base (points, one colour per rung), rung means with their 95 % interval across
    bases (bars, t intervals like the report's table), the fitted trend at the ladder's mean headroom from the smallest rung to ``extent[1]`` parameters
    with its 95 % band (``fits[key]``: a LadderFit or None; for sparsity, the fit of the changed share 1 - sparsity), the published value
    or band at ``published_size``, and on the drift panel the rule's ``threshold``. ``rungs``: {name: list of base
    records}."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 3.8))
    grid = np.logspace(np.log10(extent[0]), np.log10(extent[1]), 60)
    for ax, (key, (label, published, log_y)) in zip(axes, PANELS.items()):
        for i, (name, recs) in enumerate(rungs.items()):
            x = [r["params"] for r in recs]
            y = [r[key] for r in recs]
            ax.scatter(x, y, s=10, color=f"C{i % 10}", alpha=0.6, label=name)
            iv = Interval.of([v for v, r in zip(y, recs) if r["reached"]])
            if iv.n >= 2:
                lo, hi = iv.bounds()
                lo = max(lo, iv.mean * 1e-3) if log_y else lo  # a log axis cannot show a bound at or below 0
                ax.errorbar([x[0]], [iv.mean], yerr=[[iv.mean - lo], [hi - iv.mean]], fmt="_", color=f"C{i % 10}",
                            capsize=3)
        fit = fits.get(key)
        if fit is not None:
            pred = [fit.predict(n) for n in grid]
            mid = np.asarray([p.mean for p in pred])
            lo, hi = (np.asarray([p.bounds()[j] for p in pred]) for j in (0, 1))
            tr = (lambda a: 2.0 ** a) if key != "sparsity" else (lambda a: 1.0 - 2.0 ** a)  # sparsity: fit of the changed share
            ax.plot(grid, tr(mid), "k-", lw=1, label="fit, mean headroom")
            ax.fill_between(grid, tr(lo), tr(hi), color="0.6", alpha=0.3, label="95 % band (units: bases)")
        if isinstance(published, tuple):
            ax.fill_between([published_size / 3, published_size * 6], *published, color="C3", alpha=0.2,
                            label="published band")
        else:
            ax.scatter([published_size], [published], marker="*", s=120, color="C3", zorder=5, label="published (1.5B)")
        if key == "drift_ratio":
            ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"rule: drift {threshold:g}")
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("parameters (log)")
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(fontsize=5, ncol=2)
    fig.suptitle("Regime ladder: RL to the target gain at a published per-step ratio, across bases", fontsize=9)
    return fig
