"""RL against SFT at equal update size (docs/science.md section 6), with the step-size placebo.

``Compared`` holds, per seed: the matched RL run (the profile's RL rate, stopped at the target gain), SFT at its
customary rate and matched gain (the descriptive comparison), SFT at the RL rate for a fixed number of steps with a
snapshot at every evaluation (read at the snapshot whose update size equals the RL run's: the decisive comparison,
``verify.measures.size.at_equal_size``), and RL at the SFT rate and matched gain (the placebo: the comparator role
played by the same RL algorithm at the comparator's step size). SFT on demonstrations needs about 17 times RL's
drift for the same gain in this toy world, so no SFT run matches RL in gain and size at once; the equal-size
snapshot reports its own gain.
"""

from __future__ import annotations

from dataclasses import dataclass

from toy_models.finetune import RunSpec


@dataclass(frozen=True)
class Compared:
    """``rl[i]``, ``sft[i]``, ``sft_size[i]`` and ``placebo[i]`` are the runs of seed ``seeds[i]``."""

    seeds: tuple[int, ...]
    rl: tuple[RunSpec, ...]
    sft: tuple[RunSpec, ...]
    sft_size: tuple[RunSpec, ...]
    placebo: tuple[RunSpec, ...]


def sft_at_rl_rate(p, seed: int) -> RunSpec:
    """SFT at the profile's RL rate for ``p.equal_size_steps`` steps, a snapshot at every evaluation step."""
    steps = p.equal_size_steps
    return p.sft(seed, lr=p.rl_lr, steps=steps, matched=False,
                 snapshot_steps=tuple(range(p.eval_every, steps + 1, p.eval_every)))


def compared(p, seeds=None) -> Compared:
    """The RL-against-SFT run set of profile ``p`` for ``seeds`` (default: the profile's seeds)."""
    seeds = tuple(p.seeds if seeds is None else seeds)
    return Compared(seeds, tuple(p.rl(s) for s in seeds), tuple(p.sft(s) for s in seeds),
                    tuple(sft_at_rl_rate(p, s) for s in seeds), tuple(p.rl(s, lr=p.sft_lr) for s in seeds))
