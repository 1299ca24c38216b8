"""Figure of the fp16-export counterfactual (precision.fp16_export): bf16 against fp16 export sparsity of the same
runs, per seed, beside the controls, with the rule's floor on the difference."""

from __future__ import annotations

import matplotlib.pyplot as plt


def export_sparsity_bars(groups: dict, floor: float, paper: tuple[float, float]):
    """Left: bf16 and fp16 export sparsity per unit of every group ({label: (bf16 values, fp16 values)}) with the
    simulated published point ``paper`` (bf16, fp16) as dashed lines; right: the per-unit difference with the
    rule's ``floor``. Returns the unsaved figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    x, ticks, names = 0, [], []
    for gi, (label, (bf, fp)) in enumerate(groups.items()):
        for i, (b, f) in enumerate(zip(bf, fp)):
            left.bar(x - 0.2, b, 0.4, color="C0", label="bf16 export" if x == 0 else None)
            left.bar(x + 0.2, f, 0.4, color="C3", label="fp16 export" if x == 0 else None)
            right.bar(x, b - f, 0.6, color=f"C{gi}")
            ticks.append(x)
            names.append(f"{label} {i}")
            x += 1
        x += 0.5
    left.axhline(paper[0], color="C0", ls="--", lw=1, label=f"published drift, simulated: bf16 {paper[0]:.2f}")
    left.axhline(paper[1], color="C3", ls="--", lw=1, label=f"published drift, simulated: fp16 {paper[1]:.2f}")
    right.axhline(floor, color="k", ls="--", lw=1, label=f"floor {floor:g}")
    right.axhline(0, color="0.5", lw=0.5)
    for ax, ylabel in ((left, "export sparsity (share unchanged)"), (right, "bf16 - fp16 export sparsity")):
        ax.set_xticks(ticks, names, rotation=60, fontsize=6)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=6)
    left.set_ylim(0, 1)
    fig.suptitle("Gate III counterfactual: the same fp32-master runs released in bf16 and in fp16", fontsize=9)
    return fig
