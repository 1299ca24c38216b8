"""Adapter claims (docs/science.md C15, C16; section 5, PEFT for RLVR): PiSSA brings no gain over LoRA in RLVR
and collapses sooner at the higher learning rates adapters need (``adapters.grid``), and low-rank adapters, rank 1
included, can match full RL because RL's update is small and concentrated (``adapters.approximation``).

The grid. RL with ``lora``, ``pissa``, ``milora`` and the candidate ``offprincipal`` (toy_models/adapters.py), every
one on all six block kernels with alpha = 2 rank (s = alpha / rank = 2 for every rank and kind, so the three
SVD-free merges of one rank share one compiled step) and ``offprincipal`` projected off the top k = d_model / 8
singular subspaces (the tiny base: k = 4, the ``K`` of the Gate II claims). Ranks are fractions of min(in, out) of
the targeted matrices, which is d_model on these bases: 1/16, 1/4 and 1/2 give 2, 8 and 16 on the tiny base
(d_model 32) and 4, 16, 32 on the small base; which fractions a profile runs is in its ``adapter_grid`` (``verify.knobs.AdapterGrid``). Every cell runs a
fixed number of steps (gain at equal steps, ``matched=False``) over a learning-rate grid of >= 5 rates spanning
2 decades, beside full RL over its own small grid, and with ``train.on_nan="stop"`` so that a run that hits
NaN/Inf ends at its last good step with reason "diverged" (a collapse) instead of raising.

Per cell and seed: the held-out gain at the last step; the first evaluation step at which the gain reached the
profile's target gain; collapse (``collapse_point``) and its onset step; the exact KL to the base on the probe
set; the normalised spectral shift and the largest top-k principal angle of the merged block matrices (fp32
master, ``verify.claims.gate2.spectral_drift``).

The same grid with SFT on demonstrations (``profile.sft``) is reported, not decided: the paper's story (PiSSA
trains the principal directions that SFT moves) predicts that PiSSA helps SFT more than RL.

Controls. adapters.grid: planted per-pair inputs that must flip the rule both ways, and a null pair from the real grid
(LoRA against LoRA of the next seed in PiSSA's place), which must not come out REPRODUCED: with 3 or more seeds the
"collapses first in more pairs" count can fire on seed noise alone, and this control says so when it does.
adapters.approximation: planted adapter and full gains at and far below the margin.

Views: the fp32 master weights for every continuous quantity; the adapters are merged into full parameters by
the trainer, so every run's snapshot is a full checkpoint.
"""

from __future__ import annotations

import math

import jax
import matplotlib.pyplot as plt
import numpy as np

from theory.spectral import top_k_energy_share
from toy_models.adapters import AdapterConfig
from toy_models.finetune import RunSpec
from verify.claims.gate2 import _pairs, spectral_drift
from verify.knobs import ADAPTER_KINDS, ADAPTER_LRS, AdapterGrid
from verify.profiles import PROFILES
from verify.registry import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Estimate,
    Measurement,
    claim,
    negative,
    positive,
)
from verify.stats import over_seeds

KINDS = ADAPTER_KINDS
FULL = "full"  # the cell label of full fine-tuning (adapter kind "none")
ALPHA_PER_RANK = 2.0  # alpha = 2 rank: s = alpha / rank = 2 for every rank
COLLAPSE_DROP = 0.10  # collapsed: held-out accuracy or windowed training reward ends this far below the base accuracy
MATCH_MARGIN = 0.05  # "reaches full RL's gain": the adapter's gain is at most this far below (5 points of accuracy)
ENERGY_RANKS = (1, 2, 4, 8, 16, 32)  # ranks r of the energy-share curve (capped at min(m, n))
ISOTROPIC_DRAWS = 32  # Gaussian matrices per shape for the isotropic energy-share reference
PLANTED_SEEDS = tuple(range(6))  # synthetic controls use their own seeds (independent of the profile)


def knobs(p) -> AdapterGrid:
    """The adapter grid of profile ``p`` (``Profile.adapters``: its own, or ``AdapterGrid.derived``)."""
    return p.adapters


def rank_limit(model) -> int:
    """min(in, out) over the targeted block matrices (q, k, v, o: d x d; fc_in, fc_out: d x d_ff)."""
    return min(model.d_model, model.d_ff)


def rank_for(fraction: float, model) -> int:
    """Adapter rank of a fraction of min(in, out): max(1, round(fraction x min(d_model, d_ff)))."""
    return max(1, int(round(fraction * rank_limit(model))))


def ranks(p, method: str = "rl") -> tuple[int, ...]:
    """The adapter ranks of profile ``p``'s ``method`` grid ('rl' or 'sft'), ascending."""
    k = knobs(p)
    fractions = k.rank_fractions if method == "rl" else k.sft_rank_fractions
    return tuple(sorted({rank_for(f, p.base.model) for f in fractions}))


def offprincipal_k(model) -> int:
    """The principal subspace the offprincipal kind never moves: k = max(1, d_model / 8) (4 on the tiny base)."""
    return max(1, model.d_model // 8)


def adapter_config(kind: str, rank: int, model) -> AdapterConfig:
    """The AdapterConfig of a grid cell: all six block kernels, alpha = 2 rank, k = d_model / 8 for every kind (the
    same alpha, targets and k let lora, pissa and milora of one rank share one compiled step)."""
    return AdapterConfig(kind=kind, rank=rank, alpha=ALPHA_PER_RANK * rank, k=offprincipal_k(model))


def cell_spec(p, method: str, kind: str, rank: int, lr: float, seed: int) -> RunSpec:
    """The RunSpec of one grid cell: ``method`` 'rl' or 'sft', ``kind`` an adapter kind or 'full', fixed steps of
    the profile's knobs, fp32 master weights, and a NaN/Inf step recorded as divergence (train.on_nan='stop')."""
    k = knobs(p)
    steps = k.steps if method == "rl" else k.sft_steps
    build = p.rl if method == "rl" else p.sft
    spec = build(seed, lr=lr, steps=steps, matched=False, on_nan="stop")
    if kind == FULL:
        return spec
    return spec.replace(adapter=adapter_config(kind, rank, p.base.model))


def cells(p, method: str) -> list[tuple[str, int, float, int]]:
    """Every (kind, rank, lr, seed) of the ``method`` grid of profile ``p``; full fine-tuning has rank 0."""
    k = knobs(p)
    seeds = p.seeds[: k.seeds]
    kinds, lrs, full_lrs = (k.kinds, k.lrs, k.full_lrs) if method == "rl" else (k.sft_kinds, k.sft_lrs, k.sft_full_lrs)
    out = [(kind, r, lr, s) for kind in kinds for r in ranks(p, method) for lr in lrs for s in seeds]
    return out + [(FULL, 0, lr, s) for lr in full_lrs for s in seeds]


def grid_runs(p) -> list[RunSpec]:
    """Every run adapters.grid reads: the RL grid and the SFT grid."""
    return [cell_spec(p, m, *c) for m in ("rl", "sft") for c in cells(p, m)]


def rank1_cells(p) -> list[tuple[str, int, float, int]]:
    """(kind, rank, lr, seed) of rank-1 LoRA over the adapter learning rates (adapters.approximation)."""
    k = knobs(p)
    return [("lora", 1, lr, s) for lr in k.lrs for s in p.seeds[: k.seeds]]


def approximation_runs(p) -> list[RunSpec]:
    """Every run adapters.approximation reads: full RL over its grid, rank-1 LoRA and the grid's LoRA cells."""
    full = [c for c in cells(p, "rl") if c[0] in (FULL, "lora")]
    return [cell_spec(p, "rl", *c) for c in dict.fromkeys(full + rank1_cells(p))]


# ----------------------------------------------------------------------------------------------
# per-run measurements (plain numbers in, plain numbers out)


def collapse_point(eval_steps, eval_gains, rewards=(), *, window: int = 10, base_acc: float = float("nan"),
                   drop: float = COLLAPSE_DROP, diverged_at: int | None = None) -> tuple[bool, int | None, str]:
    """(collapsed, onset step, cause) of one run. A run collapsed when
    - it diverged (NaN/Inf; onset: the first bad step), or
    - its held-out accuracy gain at the last evaluation is <= -``drop`` (onset: the first evaluation from which every
      later one is <= -drop), or
    - its mean training reward over the last complete window of ``window`` steps is <= ``base_acc`` - ``drop`` (the
      base's held-out accuracy estimates its expected reward: same tasks, same sampling; onset: the end of the first
      window from which every later complete window is below).
    The earliest onset of the criteria that fired is returned; cause is 'NaN', 'held-out', 'reward' or ''."""
    found = []
    if diverged_at is not None:
        found.append((int(diverged_at), "NaN"))
    g = np.asarray(eval_gains, float)
    if g.size and g[-1] <= -drop:
        below = g <= -drop
        first = int(np.flatnonzero(~below)[-1]) + 1 if (~below).any() else 0
        found.append((int(eval_steps[first]), "held-out"))
    r = np.asarray(rewards, float)
    n = r.size // window if window >= 1 else 0
    if n >= 1 and math.isfinite(base_acc):
        means = r[: n * window].reshape(n, window).mean(axis=1)
        below = means <= base_acc - drop
        if below[-1]:
            first = int(np.flatnonzero(~below)[-1]) + 1 if (~below).any() else 0
            found.append(((first + 1) * window, "reward"))
    if not found:
        return False, None, ""
    step, cause = min(found)
    return True, step, cause


def steps_to_target(eval_steps, eval_gains, target: float) -> int | None:
    """The first evaluation step whose held-out gain is >= ``target`` (None: never within the run)."""
    for s, g in zip(eval_steps, eval_gains):
        if g >= target:
            return int(s)
    return None


def cell_record(ctx, run) -> dict:
    """Everything the grid reads of one finished run (memoised): gain at the last step, steps to the profile's target
    gain, collapse and onset (RL: held-out, reward and NaN criteria; SFT: NaN only, because SFT on demonstrations
    first falls below the base while it learns the scratchpad format), exact KL to the base, NSS and angle."""

    def compute():
        s, t = run.summary, run.spec.train
        records = run.metrics()
        evals = [(m["step"], m["heldout/gain"]) for m in records if "heldout/gain" in m]
        steps_e, gains_e = [e[0] for e in evals], [e[1] for e in evals]
        diverged = s.get("diverged_at") if s.get("reason") == "diverged" else None
        if t.method == "rl":
            rewards = [m["reward/mean"] for m in records if "reward/mean" in m]
            collapsed, onset, cause = collapse_point(steps_e, gains_e, rewards, window=t.eval_every,
                                                     base_acc=s["base_mean"], diverged_at=diverged)
        else:
            collapsed, onset, cause = (diverged is not None), diverged, ("NaN" if diverged is not None else "")
        nss, angle = spectral_drift(_pairs(ctx, run, True))
        return {"gain": float(s["gain"]), "steps_to_target": steps_to_target(steps_e, gains_e, ctx.profile.target_gain),
                "collapsed": collapsed, "collapse_step": onset, "collapse_cause": cause, "kl": float(s["kl_to_base_final"]),
                "nss": nss, "angle": angle, "stopped_at": s["stopped_at"], "eval_steps": steps_e, "eval_gains": gains_e}

    return ctx.memo(("adapters.cell", run.directory.name), compute)


# ----------------------------------------------------------------------------------------------
# decisions (plain numbers)


def best_lr(gains_by_lr: dict) -> float:
    """The learning rate with the highest seed-mean gain at equal steps (ties: the smaller rate); NaNs ignored.
    The rule for every method's best rate, full fine-tuning's included."""
    def mean(v):
        v = [x for x in v if x is not None and math.isfinite(x)]
        return float(np.mean(v)) if v else -math.inf

    return min(gains_by_lr, key=lambda lr: (-mean(gains_by_lr[lr]), lr))


def collapse_key(collapse_lr: float | None, collapse_step: int | None) -> tuple[float, float]:
    """Ordering of 'how soon' a method collapses over a learning-rate grid: the lowest rate at which it collapsed,
    then the onset step at that rate ('sooner' at the same rate); never collapsed sorts last."""
    return (math.inf if collapse_lr is None else float(collapse_lr), math.inf if collapse_step is None else float(collapse_step))


def first_collapse(lrs, collapsed, steps) -> tuple[float | None, int | None]:
    """(lowest rate at which the run collapsed, its onset step) over one seed's rates; (None, None) if none did."""
    hits = sorted((lr, st) for lr, c, st in zip(lrs, collapsed, steps) if c)
    return hits[0] if hits else (None, None)


def decide_grid(lora_best, pissa_best, lora_collapse, pissa_collapse) -> tuple[str, dict]:
    """C15 on per-(rank, seed) numbers: ``*_best`` the gain at each method's best rate, ``*_collapse`` the
    ``collapse_key`` of each. PiSSA - LoRA gain CI not above 0 and PiSSA collapsing first in more pairs than LoRA
    -> REPRODUCED; CI above 0, or LoRA collapsing first in more pairs -> NOT REPRODUCED; else INCONCLUSIVE."""
    diff = over_seeds(np.asarray(pissa_best, float) - np.asarray(lora_best, float))
    pissa_first = sum(tuple(p) < tuple(q) for p, q in zip(pissa_collapse, lora_collapse))
    lora_first = sum(tuple(q) < tuple(p) for p, q in zip(pissa_collapse, lora_collapse))
    if diff.low > 0 or lora_first > pissa_first:
        status = NOT_REPRODUCED
    elif pissa_first > lora_first:
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    return status, {"gain_diff": diff, "pissa_first": pissa_first, "lora_first": lora_first, "pairs": len(lora_best)}


def decide_match(adapter_gains, full_gains, margin: float = MATCH_MARGIN) -> tuple[str, Estimate]:
    """C16: per-seed adapter - full gain (each at its best rate). CI low >= -``margin`` (the adapter reaches full
    fine-tuning's gain within the margin) -> REPRODUCED; CI high < -margin -> NOT REPRODUCED; else INCONCLUSIVE."""
    diff = over_seeds(np.asarray(adapter_gains, float) - np.asarray(full_gains, float))
    if diff.low >= -margin:
        return REPRODUCED, diff
    if diff.high < -margin:
        return NOT_REPRODUCED, diff
    return INCONCLUSIVE, diff


def rank_energy_share(dW, r: int) -> float:
    """Share of |dW|_F^2 in the top-r singular directions of dW (the best rank-r approximation's share, Eckart-Young),
    fp64; r is capped at min(m, n)."""
    dW = np.asarray(dW, np.float64)
    with jax.enable_x64(True):
        return float(top_k_energy_share(dW, min(int(r), *dW.shape)))


def isotropic_energy_share(m: int, n: int, r: int, draws: int = ISOTROPIC_DRAWS, seed: int = 0) -> float:
    """Mean top-r energy share of i.i.d. Gaussian m x n matrices (the reference of an update with no preferred
    directions); fixed seed, ``draws`` matrices."""
    rng = np.random.default_rng(seed)
    r = min(r, m, n)
    vals = []
    for _ in range(draws):
        s2 = np.linalg.svd(rng.standard_normal((m, n)), compute_uv=False) ** 2
        vals.append(s2[:r].sum() / s2.sum())
    return float(np.mean(vals))


# ----------------------------------------------------------------------------------------------
# the grid table: cell records grouped by (method, kind, rank, lr)


class Grid:
    """The finished runs of one method's grid and their records, indexed by (kind, rank, lr, seed)."""

    def __init__(self, ctx, method: str, cell_list=None):
        p = ctx.profile
        self.method = method
        self.steps = knobs(p).steps if method == "rl" else knobs(p).sft_steps
        self.cells = list(dict.fromkeys(cell_list if cell_list is not None else cells(p, method)))
        self.runs = {c: ctx.run(cell_spec(p, method, *c)) for c in self.cells}
        self.rec = {c: cell_record(ctx, r) for c, r in self.runs.items()}
        self.seeds = sorted({c[3] for c in self.cells})
        self.arms = list(dict.fromkeys((c[0], c[1]) for c in self.cells))  # (kind, rank), in declaration order

    def lrs(self, kind: str, rank: int) -> list[float]:
        """The learning rates of one arm, ascending."""
        return sorted({c[2] for c in self.cells if c[0] == kind and c[1] == rank})

    def values(self, kind: str, rank: int, lr: float, key: str) -> list:
        """Per-seed values of one record field in one cell."""
        return [self.rec[(kind, rank, lr, s)][key] for s in self.seeds]

    def gains(self, kind: str, rank: int) -> dict:
        """{lr: per-seed gains} of one arm."""
        return {lr: self.values(kind, rank, lr, "gain") for lr in self.lrs(kind, rank)}

    def best(self, kind: str, rank: int) -> tuple[float, list[float]]:
        """(best rate, per-seed gains at it) of one arm."""
        g = self.gains(kind, rank)
        lr = best_lr(g)
        return lr, g[lr]

    def collapse_keys(self, kind: str, rank: int) -> list[tuple[float, float]]:
        """Per seed: ``collapse_key`` of the arm over its rates."""
        lrs = self.lrs(kind, rank)
        out = []
        for s in self.seeds:
            recs = [self.rec[(kind, rank, lr, s)] for lr in lrs]
            out.append(collapse_key(*first_collapse(lrs, [r["collapsed"] for r in recs], [r["collapse_step"] for r in recs])))
        return out

    def all_runs(self) -> list:
        """Every RunResult of the grid."""
        return list(self.runs.values())


def edge_notes(grid: Grid, best: dict) -> list[str]:
    """One sentence per arm whose best rate is the lowest or highest rate of its grid (a best rate at an edge may
    not be the arm's optimum: the grid did not bracket it); ``best`` maps (kind, rank) to (rate, gains)."""
    out = []
    for (kind, rank), (lr, _) in best.items():
        lrs = grid.lrs(kind, rank)
        if len(lrs) > 1 and lr in (lrs[0], lrs[-1]):
            side = "lowest" if lr == lrs[0] else "highest"
            out.append(f"{grid.method.upper()} {arm_label(kind, rank)}: best rate {lr:g} is the {side} of its grid "
                       f"({', '.join(f'{x:g}' for x in lrs)}); its optimum may lie beyond it.")
    return out


def _fmt_lr(lr) -> str:
    return "-" if lr is None or not math.isfinite(lr) else f"{lr:g}"


def _cell_numbers(grid: Grid) -> dict:
    """Per (kind, rank, lr): gain, KL, NSS, angle over seeds; seeds that reached the target and their median step;
    seeds collapsed and their median onset."""
    out = {}
    for kind, rank in grid.arms:
        for lr in grid.lrs(kind, rank):
            tag = f"{grid.method}/{kind}" + (f"/r{rank}" if kind != FULL else "") + f"/lr{lr:g}"
            for key in ("gain", "kl", "nss", "angle"):
                out[f"{tag}/{key}"] = over_seeds(grid.values(kind, rank, lr, key))
            reached = [x for x in grid.values(kind, rank, lr, "steps_to_target") if x is not None]
            out[f"{tag}/reached_target"] = f"{len(reached)}/{len(grid.seeds)}"
            out[f"{tag}/steps_to_target_median"] = float(np.median(reached)) if reached else float("nan")
            onset = [x for x, c in zip(grid.values(kind, rank, lr, "collapse_step"), grid.values(kind, rank, lr, "collapsed")) if c]
            out[f"{tag}/collapsed"] = f"{len(onset)}/{len(grid.seeds)}"
            out[f"{tag}/collapse_step_median"] = float(np.median(onset)) if onset else float("nan")
    return out


def arm_label(kind: str, rank: int) -> str:
    """Legend label of an arm: "full fine-tuning" or "<kind> r<rank>"."""
    return "full fine-tuning" if kind == FULL else f"{kind} r{rank}"


def gain_figure(grid: Grid, title: str):
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


def collapse_figure(grid: Grid, title: str):
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


def geometry_figure(grid: Grid, title: str):
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


def ranks_index(grid: Grid, rank: int) -> int:
    """Position of ``rank`` among the grid's adapter ranks (line style of the geometry figure)."""
    return sorted({r for k, r in grid.arms if k != FULL}).index(rank)


def null_pairs(grid: Grid, rks) -> tuple[list, list, list, list]:
    """Inputs of ``decide_grid`` for a null pair: LoRA's per-seed best gains and collapse keys, against the same
    LoRA numbers of the next seed (cyclically) in PiSSA's place, per rank. Both arms are one method, so a
    REPRODUCED verdict here means the rule fires on seed noise alone (with 2 seeds the pair counts always tie)."""
    lora_best, lora_keys, other_best, other_keys = [], [], [], []
    for r in rks:
        g, keys = grid.best("lora", r)[1], grid.collapse_keys("lora", r)
        lora_best += list(g)
        lora_keys += keys
        other_best += list(np.roll(g, -1))
        other_keys += keys[1:] + keys[:1]
    return lora_best, other_best, lora_keys, other_keys


# ----------------------------------------------------------------------------------------------
# planted inputs of the controls


def planted_grid(pissa_gain_shift: float, pissa_collapse_shift: int, seed: int = 0, pairs: int = 6):
    """Synthetic per-pair inputs of ``decide_grid``: LoRA gains around 0.3 collapsing at grid index 4 of
    ``ADAPTER_LRS`` at step 60; PiSSA's gains shifted by ``pissa_gain_shift`` and its collapse index by
    ``pissa_collapse_shift`` (a shift past the grid means it never collapses)."""
    rng = np.random.default_rng(seed)
    lora = 0.3 + rng.normal(0, 0.02, pairs)
    pissa = lora + pissa_gain_shift + rng.normal(0, 0.02, pairs)
    idx = 4 + pissa_collapse_shift
    pissa_key = collapse_key(ADAPTER_LRS[idx], 60) if 0 <= idx < len(ADAPTER_LRS) else collapse_key(None, None)
    return lora, pissa, [collapse_key(ADAPTER_LRS[4], 60)] * pairs, [pissa_key] * pairs


def planted_match(shift: float, seed: int = 0):
    """Synthetic (adapter gains, full gains) for ``decide_match``: full gains around 0.3, the adapter's shifted by
    ``shift`` with noise of 0.01, over ``PLANTED_SEEDS``."""
    rng = np.random.default_rng(seed)
    full = 0.3 + rng.normal(0, 0.03, len(PLANTED_SEEDS))
    return full + shift + rng.normal(0, 0.01, len(PLANTED_SEEDS)), full


# ----------------------------------------------------------------------------------------------
# adapters.grid (C15)


def _grid_rule() -> str:
    by_profile = "; ".join(f"{name}: ranks x{'/'.join(f'{f:.3g}' for f in k.rank_fractions)} of min(in, out), kinds "
                           f"{'/'.join(k.kinds)}, rates {'/'.join(f'{x:g}' for x in k.lrs)}, full RL "
                           f"{'/'.join(f'{x:g}' for x in k.full_lrs)}, {k.steps} steps, {k.seeds} seeds"
                           for name, k in ((n, q.adapter_grid) for n, q in PROFILES.items() if q.adapter_grid is not None))
    return (f"RL grid at equal steps (alpha = 2 rank, all block kernels; {by_profile}; other profiles: AdapterGrid.derived). "
            f"Best rate of each arm = highest seed-mean held-out gain. Collapse = NaN, or held-out gain at the last "
            f"evaluation <= -{COLLAPSE_DROP}, or mean training reward of the last {{eval_every}}-step window <= base "
            f"accuracy - {COLLAPSE_DROP}; a method collapses first in a (rank, seed) pair if its lowest collapsing rate "
            "is lower (same rate: earlier onset step). REPRODUCED iff the CI of PiSSA - LoRA gain (each at its best "
            "rate, per rank and seed) does not lie above 0 AND PiSSA collapses first in more pairs than LoRA; NOT "
            "REPRODUCED iff that CI lies above 0 OR LoRA collapses first in more pairs; else INCONCLUSIVE. The same "
            "grid with SFT is reported (PiSSA - LoRA in SFT minus in RL), not decided")


@claim("adapters.grid", paper=("C15",), title="PiSSA brings no gain over LoRA in RLVR and collapses at lower learning rates",
       paper_number="no gain over LoRA; collapses sooner at high lr (ranks 8-64, lr 1e-5 to 1e-4; figures only). PEFT for "
                    "RLVR (1.5B): full 44.9, LoRA 42.5, MiLoRA 18.0, PiSSA 0.2",
       rule=_grid_rule(), runs=grid_runs, sweep=True)
def grid(ctx, runs) -> Measurement:
    """adapters.grid (C15): the RL adapter grid decided PiSSA against LoRA; the SFT grid reported beside it."""
    p = ctx.profile
    rl, sft = Grid(ctx, "rl"), Grid(ctx, "sft")
    rks = ranks(p)
    pairs = {"lora_best": [], "pissa_best": [], "lora_collapse": [], "pissa_collapse": []}
    best = {}
    for kind, r in rl.arms:
        best[(kind, r)] = rl.best(kind, r)
    for r in rks:
        pairs["lora_best"] += best[("lora", r)][1]
        pairs["pissa_best"] += best[("pissa", r)][1]
        pairs["lora_collapse"] += rl.collapse_keys("lora", r)
        pairs["pissa_collapse"] += rl.collapse_keys("pissa", r)
    status, d = decide_grid(pairs["lora_best"], pairs["pissa_best"], pairs["lora_collapse"], pairs["pissa_collapse"])
    null_status, null = decide_grid(*null_pairs(rl, rks))
    pos, _ = decide_grid(*planted_grid(0.0, -1))
    neg, _ = decide_grid(*planted_grid(0.1, +5, seed=1))

    # SFT: PiSSA - LoRA at each one's best rate, and the same difference in SFT minus in RL, per (rank, seed), at the
    # ranks both grids ran
    sft_best = {a: sft.best(*a) for a in sft.arms}
    sft_diff, did = [], []
    for r in rks:
        if ("lora", r) in sft_best and ("pissa", r) in sft_best:
            dd = np.asarray(sft_best[("pissa", r)][1]) - np.asarray(sft_best[("lora", r)][1])
            sft_diff += dd.tolist()
            did += (dd - (np.asarray(best[("pissa", r)][1]) - np.asarray(best[("lora", r)][1]))).tolist()
    sft_diff_e, did_e = over_seeds(sft_diff), over_seeds(did)
    sft_word = {REPRODUCED: "yes", NOT_REPRODUCED: "no, the opposite", INCONCLUSIVE: "undecided"}[
        REPRODUCED if did_e.low > 0 else NOT_REPRODUCED if did_e.high < 0 else INCONCLUSIVE]

    full_lr, full_g = best[(FULL, 0)]
    numbers = {"pissa_minus_lora_gain": d["gain_diff"], "pissa_collapses_first": float(d["pissa_first"]),
               "lora_collapses_first": float(d["lora_first"]), "pairs": float(d["pairs"]),
               "null_pair_gain_diff": null["gain_diff"], "null_pair_first_counts": f"{null['pissa_first']} vs {null['lora_first']}",
               "full_best_lr": full_lr, "full_best_gain": over_seeds(full_g),
               "sft_pissa_minus_lora_gain": sft_diff_e, "sft_minus_rl_pissa_advantage": did_e,
               "ranks": ", ".join(str(r) for r in rks), "steps_rl": float(knobs(p).steps), "steps_sft": float(knobs(p).sft_steps)}
    for (kind, r), (lr, g) in best.items():
        if kind != FULL:
            numbers[f"rl/{kind}/r{r}/best_lr"] = lr
            numbers[f"rl/{kind}/r{r}/best_gain"] = over_seeds(g)
            cl = [k[0] for k in rl.collapse_keys(kind, r)]
            numbers[f"rl/{kind}/r{r}/lowest_collapse_lr_per_seed"] = ", ".join(_fmt_lr(x) for x in cl)
    for (kind, r), (lr, g) in sft_best.items():
        tag = f"sft/{kind}" + (f"/r{r}" if kind != FULL else "")
        numbers[f"{tag}/best_lr"] = lr
        numbers[f"{tag}/best_gain"] = over_seeds(g)
    numbers |= _cell_numbers(rl) | _cell_numbers(sft)

    lo_lr = {r: best[("lora", r)][0] for r in rks}
    pi_lr = {r: best[("pissa", r)][0] for r in rks}
    headline = (f"RL: PiSSA - LoRA best gain {d['gain_diff'].text('+.3f')} (best lr "
                + ", ".join(f"r{r}: PiSSA {pi_lr[r]:g} / LoRA {lo_lr[r]:g}" for r in rks)
                + f"); collapses first: PiSSA in {d['pissa_first']}, LoRA in {d['lora_first']} of {d['pairs']} (rank, seed) "
                f"pairs; full RL best {over_seeds(full_g).text('.3f')} at lr {full_lr:g}. SFT: PiSSA - LoRA "
                f"{sft_diff_e.text('+.3f')}; PiSSA helps SFT more than RL: {sft_word} ({did_e.text('+.3f')})")
    k = knobs(p)
    return Measurement(
        status, headline, numbers=numbers,
        controls=[positive("planted: equal gains, PiSSA collapsing one rate lower in every pair", pos),
                  negative("null pair: LoRA of the next seed in PiSSA's place (real grid)", null_status),
                  negative("planted: PiSSA 0.1 above LoRA and never collapsing", neg)],
        figures=[gain_figure(rl, f"C15: RL gain vs learning rate ({k.steps} steps, {len(rl.seeds)} seeds)"),
                 collapse_figure(rl, "C15: RL collapse map"),
                 geometry_figure(rl, "C15: distance from the base of the merged RL weights (fp32 master, block matrices)"),
                 gain_figure(sft, f"C15 context: SFT gain vs learning rate ({k.sft_steps} steps, {len(sft.seeds)} seeds)")],
        runs=rl.all_runs() + sft.all_runs(),
        notes=[f"Ranks {list(rks)} (SFT: {list(ranks(p, 'sft'))}) = fractions {list(k.rank_fractions)} (SFT: "
               f"{list(k.sft_rank_fractions)}) of min(in, out) = {rank_limit(p.base.model)}; alpha = "
               f"2 rank (s = 2); offprincipal k = {offprincipal_k(p.base.model)}; all six block kernels (embeddings and "
               "unembedding frozen under every adapter). Full RL's best rate is chosen by the same rule as every arm's.",
               f"Collapse: NaN/Inf (the trainer's on_nan='stop' records it), or the held-out gain at the last evaluation <= "
               f"-{COLLAPSE_DROP}, or the mean training reward over the last complete window of eval_every steps <= base "
               f"accuracy - {COLLAPSE_DROP}; onset = first evaluation (window end) from which it stays below. SFT cells "
               "count NaN only: SFT on demonstrations first falls below the base in every run while it learns the "
               "scratchpad format.",
               "KL: exact token-mean KL(pi || base) on the probe set at the last step; NSS and angle: fp32 master merged "
               "block matrices against the base, top-4 subspaces (verify.claims.gate2.spectral_drift).",
               f"Steps to target: first evaluation (every {p.eval_every} steps) with gain >= {p.target_gain}; numbers "
               "'<cell>/reached_target' and '<cell>/steps_to_target_median'."] + edge_notes(rl, best) + edge_notes(sft, sft_best),
    )


# ----------------------------------------------------------------------------------------------
# adapters.approximation (C16)


def energy_curve(pairs: dict, rs=ENERGY_RANKS) -> dict[int, float]:
    """{r: mean over block matrices of the top-r energy share of dW = W1 - W0}."""
    out = {}
    for r in rs:
        out[r] = float(np.mean([rank_energy_share(W1 - W0, r) for W0, W1 in pairs.values()]))
    return out


def isotropic_curve(pairs: dict, rs=ENERGY_RANKS) -> dict[int, float]:
    """{r: mean over the same matrix shapes of the isotropic (Gaussian) top-r energy share}."""
    return {r: float(np.mean([isotropic_energy_share(*W0.shape, r) for W0, _ in pairs.values()])) for r in rs}


def ranks_for_energy(pairs: dict, share: float = 0.9) -> float:
    """Median over block matrices of the smallest r whose top-r singular directions hold ``share`` of |dW|_F^2."""
    need = []
    for W0, W1 in pairs.values():
        s2 = np.linalg.svd(np.asarray(W1 - W0, np.float64), compute_uv=False) ** 2
        c = np.cumsum(s2) / max(s2.sum(), 1e-300)
        need.append(int(np.searchsorted(c, share) + 1))
    return float(np.median(need))


@claim("adapters.approximation", paper=("C16",), title="rank-1 LoRA reaches full RL's gain at a scaled learning rate",
       paper_number="low-rank adapters, rank 1 included, can match full RL over a short run (LoRA Without Regret: at "
                    "about 10x the full-FT lr); RL updates nearly full rank (Mukherjee et al.: 99.2-99.8 %)",
       rule=f"RL at equal steps, both at their best rate (highest seed-mean gain) over the grid's rates: per-seed rank-1 "
            f"LoRA (alpha 2) gain - full RL gain: CI low >= -{MATCH_MARGIN} -> REPRODUCED; CI high < -{MATCH_MARGIN} -> NOT "
            "REPRODUCED; else INCONCLUSIVE. Reported: share of |dW|_F^2 of full RL's fp32 master update (best rate) in its "
            "top-r singular directions per block matrix against the isotropic level, the lr ratio rank-1 / full, and "
            "the grid ranks' LoRA against full",
       runs=approximation_runs, sweep=True)
def approximation(ctx, runs) -> Measurement:
    """adapters.approximation (C16): rank-r energy share of full RL's update; rank-1 LoRA's gain against full RL's."""
    p = ctx.profile
    rl = Grid(ctx, "rl", [c for c in cells(p, "rl") if c[0] in (FULL, "lora")] + rank1_cells(p))
    full_lr, full_g = rl.best(FULL, 0)
    r1_lr, r1_g = rl.best("lora", 1)
    status, diff = decide_match(r1_g, full_g)
    pos, _ = decide_match(*planted_match(0.0))
    neg, _ = decide_match(*planted_match(-4 * MATCH_MARGIN, seed=1))

    best_runs = [rl.runs[(FULL, 0, full_lr, s)] for s in rl.seeds]
    pairs = [_pairs(ctx, r, True) for r in best_runs]
    smallest = min(min(W0.shape) for W0, _ in pairs[0].values())
    rs = tuple(r for r in ENERGY_RANKS if r <= smallest)
    curves = [energy_curve(pr, rs) for pr in pairs]
    iso = isotropic_curve(pairs[0], rs)
    need90 = [ranks_for_energy(pr) for pr in pairs]
    numbers = {"rank1_minus_full_gain": diff, "full_best_lr": full_lr, "full_best_gain": over_seeds(full_g),
               "rank1_best_lr": r1_lr, "rank1_best_gain": over_seeds(r1_g), "rank1_over_full_lr": r1_lr / full_lr,
               "ranks_for_90pct_energy": over_seeds(need90)}
    for r in rs:
        numbers[f"energy_share_top{r}"] = over_seeds([c[r] for c in curves])
        numbers[f"isotropic_share_top{r}"] = iso[r]
    for r in ranks(p):
        if r != 1:
            lr_r, g_r = rl.best("lora", r)
            numbers[f"lora_r{r}_minus_full_gain"] = over_seeds(np.asarray(g_r) - np.asarray(full_g))
            numbers[f"lora_r{r}_best_lr"] = lr_r
            numbers[f"lora_r{r}_status"] = decide_match(g_r, full_g)[0]

    fig1, ax = plt.subplots(figsize=(5, 3.6))
    for s, c in zip(rl.seeds, curves):
        ax.plot(rs, [c[r] for r in rs], "o-", ms=3, alpha=0.7, label=f"full RL update, seed {s}")
    ax.plot(rs, [iso[r] for r in rs], "k--", label="isotropic Gaussian update, same shapes")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r of the approximation (log2)")
    ax.set_ylabel("share of |dW|_F^2 in the top-r singular\ndirections (mean over block matrices)", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"C16: how much of full RL's update rank r captures (lr {full_lr:g}, fp32 master)", fontsize=9)
    ax.legend(fontsize=6)

    fig2, ax = plt.subplots(figsize=(5, 3.6))
    for kind, r, style in [(FULL, 0, dict(color="k", ls="--")), ("lora", 1, dict(color="C0"))] + \
            [("lora", r, dict(color=f"C{2 + i}", ls=":")) for i, r in enumerate(x for x in ranks(p) if x != 1)]:
        lrs = rl.lrs(kind, r)
        est = [over_seeds(rl.values(kind, r, lr, "gain")) for lr in lrs]
        err = np.array([[e.mean - e.low for e in est], [e.high - e.mean for e in est]])
        ax.errorbar(lrs, [e.mean for e in est], yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                    label=arm_label(kind, r), **style)
    ax.axvline(full_lr, color="k", lw=0.6)
    ax.axvline(r1_lr, color="C0", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (AdamW, log scale)")
    ax.set_ylabel(f"held-out accuracy gain after {knobs(p).steps} steps\n(fraction of problems; mean, 95 % CI)", fontsize=8)
    ax.set_title(f"C16: rank-1 LoRA vs full RL (best lr ratio {r1_lr / full_lr:.3g})", fontsize=9)
    ax.legend(fontsize=6)

    top1 = numbers[f"energy_share_top{rs[0]}"]
    return Measurement(
        status,
        f"rank-1 LoRA - full RL gain {diff.text('+.3f')} (rank-1 {over_seeds(r1_g).text('.3f')} at lr {r1_lr:g}, full "
        f"{over_seeds(full_g).text('.3f')} at lr {full_lr:g}: ratio {r1_lr / full_lr:.3g}); full RL's update: top-1 "
        f"direction holds {top1.text('.3f')} of |dW|_F^2 (isotropic {iso[rs[0]]:.3f}), 90 % needs rank "
        f"{over_seeds(need90).text('.3g')}",
        numbers=numbers,
        controls=[positive("planted: adapter gains equal to full within noise 0.01", pos),
                  negative(f"planted: adapter gains {4 * MATCH_MARGIN} below full", neg)],
        figures=[fig1, fig2], runs=rl.all_runs(),
        notes=[f"Energy share = sum of the top-r squared singular values of dW / |dW|_F^2 (theory.spectral."
               f"top_k_energy_share, fp64), dW = fp32 master final - base of full RL at its best rate, per block matrix, "
               f"then the mean over matrices; the isotropic level is the mean over {ISOTROPIC_DRAWS} Gaussian matrices of "
               "each shape. This is the best any rank-r update could capture (Eckart-Young); LoRA does not get those "
               "directions for free.",
               "LoRA parametrisation: alpha = 2 rank (s = 2 at every rank), LoRA Without Regret uses alpha = 32 (s = 32 / "
               "rank), so its 10x lr ratio maps onto a larger ratio here at rank 1 (Adam moves B by about lr per step and "
               "the update by s times that).",
               f"Match margin {MATCH_MARGIN} of held-out accuracy (half the quick and full target gain)."]
        + edge_notes(rl, {(FULL, 0): (full_lr, full_g), ("lora", 1): (r1_lr, r1_g)}),
    )
