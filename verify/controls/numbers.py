"""Planted per-seed numbers for the rules that decide on plain numbers: curves of RL and SFT against the drift
ratio (regime.phase), sparsity against width (regime.width), per-seed RL-SFT differences under an optimizer
(regime.optimizer), final gains of masked runs (C14), the adapter grid's pairs (C15) and the
adapter-against-full gains (C16), and a null pair drawn from a real adapter grid."""

from __future__ import annotations

import numpy as np

from verify.knobs import ADAPTER_LRS
from verify.measures.adapter_grid import collapse_key

PLANTED_SEEDS = tuple(range(6))  # synthetic controls use their own seeds (independent of the profile)
WIDTHS = [16, 32, 64, 128] * 2
RISING_SPARSITY = [0.2, 0.25, 0.3, 0.35, 0.21, 0.24, 0.31, 0.34]
FLAT_SPARSITY = [0.25, 0.26, 0.25, 0.24, 0.26, 0.25, 0.24, 0.25]


def synthetic_phase(seed: int, effect: float) -> tuple:
    """Two noisy sparsity-like curves of log drift ratio, SFT shifted by ``effect`` (0: one curve)."""
    rng = np.random.default_rng(seed)
    x = 10 ** rng.uniform(-1, 2, 30)
    curve = lambda v: 1 / (1 + v)  # noqa: E731
    xs = 10 ** rng.uniform(-1, 2, 30)
    return x, curve(x) + rng.normal(0, 0.01, 30), xs, curve(xs) - effect + rng.normal(0, 0.01, 30)


def rising_sparsity(rising: bool) -> tuple[list, list]:
    """(widths, sparsity) of planted runs whose sparsity rises by 0.05 per doubling of width (``rising``) or stays
    flat (no trend by construction)."""
    return WIDTHS, RISING_SPARSITY if rising else FLAT_SPARSITY


def planted_differences(value: float, seed: int = 0, n: int = 3) -> list[float]:
    """Planted per-seed differences: ``value`` plus Gaussian noise of SD 0.01 on ``n`` seeds."""
    return (value + np.random.default_rng(seed).normal(0, 0.01, n)).tolist()


def planted_masked_gains(seed: int, seeds: int = 3) -> tuple[list, list, list, list]:
    """Synthetic final gains per seed (dense, principal, safe, random) with the effects C14 claims: principal-only
    0.05 below dense, safe equal to dense, random at the safe mask's density 0.04 below it; seed noise of 0.005."""
    rng = np.random.default_rng(seed)
    dense = 0.10 + 0.01 * rng.standard_normal(seeds)
    noise = lambda: 0.005 * rng.standard_normal(seeds)  # noqa: E731
    return list(dense), list(dense - 0.05 + noise()), list(dense + noise()), list(dense - 0.04 + noise())


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


def null_pairs(grid, rks) -> tuple[list, list, list, list]:
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
