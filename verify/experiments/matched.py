"""The matched experiment and the runs beside it (Gate I-III and the control claims).

``Matched``: RL (grpo_kl) and SFT on demonstrations from the profile's base, one run of each per seed, both
stopped at the profile's target gain (so each has learned as much), fp32 master weights with a bf16 export.
The same definition serves every claim that compares RL with SFT.
"""

from __future__ import annotations

from dataclasses import dataclass

from toy_models.finetune import RunSpec
from verify.registry import CLAIM_MODULES, load


@dataclass(frozen=True)
class Matched:
    """RL and SFT at matched gain: ``rl[i]`` and ``sft[i]`` are the runs of seed ``seeds[i]``."""

    seeds: tuple[int, ...]
    rl: tuple[RunSpec, ...]
    sft: tuple[RunSpec, ...]


def matched(p, seeds=None) -> Matched:
    """The matched RL and SFT runs of profile ``p`` for ``seeds`` (default: the profile's seeds)."""
    seeds = tuple(p.seeds if seeds is None else seeds)
    return Matched(seeds, tuple(p.rl(s) for s in seeds), tuple(p.sft(s) for s in seeds))


def large_step(p, seeds, preset: str = "grpo_kl") -> tuple[RunSpec, ...]:
    """RL far above the leash: ``p.control_lr`` for ``p.control_steps`` steps, no matched stop (Gate I controls)."""
    return tuple(p.control(s, preset) for s in seeds)


def dapo(p, seeds=None) -> tuple[RunSpec, ...]:
    """Matched RL with clipping only (dapo_clip: beta = 0, asymmetric clip), one run per seed."""
    return tuple(p.rl(s, preset="dapo_clip") for s in (p.seeds if seeds is None else seeds))


def bf16_every_step(p, seeds=None) -> tuple[RunSpec, ...]:
    """Matched RL stored in bf16 after every update (the other storage regime), one run per seed."""
    return tuple(p.rl(s, precision="bf16") for s in (p.seeds if seeds is None else seeds))


def random_init(p, seeds) -> tuple[RunSpec, ...]:
    """RL from the random initialisation of the base (no pretraining) for ``p.random_init_steps`` steps (no matched
    stop: the verifier never fires)."""
    return tuple(p.rl(s, steps=p.random_init_steps, matched=False, base=p.random_base()) for s in seeds)


def lr_sweep(p) -> dict[float, tuple[RunSpec, ...]]:
    """{lr: RL runs of the first two seeds}: ``p.sweep_steps`` steps at every rate of ``p.lr_sweep``."""
    return {lr: tuple(p.rl(s, lr=lr, steps=p.sweep_steps, matched=False) for s in p.seeds[:2]) for lr in p.lr_sweep}


def core_plain_runs(p, exclude: str = "regime.predictor") -> tuple[RunSpec, ...]:
    """Every plain fp32_master run (no adapter, mask or edit) of the Gate I-III, control and regime claims that
    `all` runs, in report order and without repeats: the runs the suite trains anyway (the case studies' runs,
    with other task mixes and edited bases, and the sweeps are left out). Reads the other claims' run sets
    through the registry, leaving out the claim ``exclude``."""
    seen: dict = {}
    ids = [i for i in CLAIM_MODULES if i != exclude and i.startswith(("gate", "control", "regime"))]
    for c in load(ids).values():
        if c.sweep:
            continue
        for s in c.specs(p):
            plain = s.adapter.kind == "none" and s.mask.kind == "none" and s.edit.kind == "none"
            if plain and s.train.precision == "fp32_master":
                seen.setdefault(s, s)
    return tuple(seen.values())
