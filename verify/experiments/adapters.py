"""The adapter grid (C15, C16): RL and SFT with ``lora``, ``pissa``, ``milora`` and ``offprincipal`` adapters
(toy_models/adapters.py) on all six block kernels, over ranks and learning rates, beside full fine-tuning over
its own rates, each cell for a fixed number of steps (gain at equal steps, ``matched=False``) and with
``train.on_nan="stop"`` (a run that hits NaN/Inf ends at its last good step, a collapse, instead of raising).

A cell is (kind, rank, lr, seed); full fine-tuning is kind ``FULL`` with rank 0. What a profile runs is its
``Profile.adapters`` (``verify.knobs.AdapterGrid``): ranks are fractions of min(in, out) of the targeted
matrices, which is d_model on these bases. alpha = 2 rank (s = alpha / rank = 2 for every rank and kind, so the
three SVD-free merges of one rank share one compiled step); offprincipal is projected off the top
k = d_model / 8 singular subspaces (4 on the tiny base, the ``K`` of the Gate II claims).
"""

from __future__ import annotations

from toy_models.adapters import AdapterConfig
from toy_models.finetune import RunSpec

FULL = "full"  # the cell label of full fine-tuning (adapter kind "none")
ALPHA_PER_RANK = 2.0  # alpha = 2 rank: s = alpha / rank = 2 for every rank


def rank_limit(model) -> int:
    """min(in, out) over the targeted block matrices (q, k, v, o: d x d; fc_in, fc_out: d x d_ff)."""
    return min(model.d_model, model.d_ff)


def rank_for(fraction: float, model) -> int:
    """Adapter rank of a fraction of min(in, out): max(1, round(fraction x min(d_model, d_ff)))."""
    return max(1, int(round(fraction * rank_limit(model))))


def ranks(p, method: str = "rl") -> tuple[int, ...]:
    """The adapter ranks of profile ``p``'s ``method`` grid ('rl' or 'sft'), ascending."""
    k = p.adapters
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
    the profile's grid, fp32 master weights, and a NaN/Inf step recorded as divergence (train.on_nan='stop')."""
    k = p.adapters
    steps = k.steps if method == "rl" else k.sft_steps
    build = p.rl if method == "rl" else p.sft
    spec = build(seed, lr=lr, steps=steps, matched=False, on_nan="stop")
    if kind == FULL:
        return spec
    return spec.replace(adapter=adapter_config(kind, rank, p.base.model))


def cells(p, method: str) -> list[tuple[str, int, float, int]]:
    """Every (kind, rank, lr, seed) of the ``method`` grid of profile ``p``; full fine-tuning has rank 0."""
    k = p.adapters
    seeds = p.seeds[: k.seeds]
    kinds, lrs, full_lrs = (k.kinds, k.lrs, k.full_lrs) if method == "rl" else (k.sft_kinds, k.sft_lrs, k.sft_full_lrs)
    out = [(kind, r, lr, s) for kind in kinds for r in ranks(p, method) for lr in lrs for s in seeds]
    return out + [(FULL, 0, lr, s) for lr in full_lrs for s in seeds]


def rank1_cells(p) -> list[tuple[str, int, float, int]]:
    """(kind, rank, lr, seed) of rank-1 LoRA over the adapter learning rates (adapters.approximation)."""
    k = p.adapters
    return [("lora", 1, lr, s) for lr in k.lrs for s in p.seeds[: k.seeds]]


def grid(p) -> dict[str, dict[tuple, RunSpec]]:
    """adapters.grid's runs: {'rl': {cell: spec}, 'sft': {cell: spec}}, the RL grid and the SFT grid."""
    return {m: {c: cell_spec(p, m, *c) for c in cells(p, m)} for m in ("rl", "sft")}


def approximation(p) -> dict[str, dict[tuple, RunSpec]]:
    """adapters.approximation's runs: {'rl': {cell: spec}}, full RL over its rates, the grid's LoRA cells and
    rank-1 LoRA over the adapter rates."""
    full = [c for c in cells(p, "rl") if c[0] in (FULL, "lora")]
    return {"rl": {c: cell_spec(p, "rl", *c) for c in dict.fromkeys(full + rank1_cells(p))}}
