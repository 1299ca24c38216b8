"""Typed knobs of the claims that differ by profile, each with the rule that derives it for a profile that
does not give it, and the one rounding of every derived learning rate.

- ``CaseSizes``: lengths and snapshot spacing of the case-study runs (C4, C12, C14) and their seeds;
- ``AdapterGrid``: the adapter grid of C15 and C16 (ranks, kinds, learning rates, steps, seeds; RL and SFT);
- ``PhaseGrid``: the learning-rate grid of regime.phase.

A ``verify.profiles.Profile`` holds one of each (``None``: derived from its own fields by ``derived``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from toy_models.pretrain import BaseConfig


def round_lr(lr: float) -> float:
    """A derived learning rate rounded to two significant digits (every rule of the suite that computes one)."""
    return float(f"{lr:.2g}")


@dataclass(frozen=True)
class CaseSizes:
    """Sizes of the case-study runs: RL runs of ``rl_steps`` steps (a multiple of 4 eval_every, so the quarters
    are snapshot steps) with a snapshot every ``rl_snapshot_every`` steps (>= 8 per run), SFT runs likewise,
    the accuracy curve every ``curve_every`` steps (masked.rl), and ``seeds`` seeds per configuration."""

    rl_steps: int
    rl_snapshot_every: int
    sft_steps: int
    sft_snapshot_every: int
    curve_every: int
    seeds: int

    @classmethod
    def derived(cls, p) -> "CaseSizes":
        """The rule for a profile that gives no sizes: RL for a fifth of the step cap rounded up to a multiple of
        4 eval_every (at least 8 eval_every), snapshots every eval_every; SFT for 4 times as many steps (capped
        by its step cap), snapshots as many as RL's; accuracy curve at the quarters; 3 seeds.

        The tiny and quick entries are what the rule gives (tiny with 2 seeds, to keep CI short). Quick's 80 RL
        steps are the median stop of the profile's matched RL runs (40 to 180 steps to +10 points, median 80),
        so the fixed-length runs end where a typical matched run ends; SFT's 320 steps keep 8 snapshots as RL's."""
        ev = p.eval_every
        rl_steps = max(8 * ev, math.ceil(p.max_steps / 5 / (4 * ev)) * 4 * ev)
        sft_steps = min(4 * rl_steps, max(rl_steps, p.sft_max_steps // (4 * ev) * 4 * ev))
        ratio = sft_steps // rl_steps if sft_steps % rl_steps == 0 else 1
        return cls(rl_steps=rl_steps, rl_snapshot_every=ev, sft_steps=sft_steps, sft_snapshot_every=ev * ratio,
                   curve_every=rl_steps // 4, seeds=3)


ADAPTER_KINDS = ("lora", "pissa", "milora", "offprincipal")
HALF_DECADES = (1.0, 3.0, 10.0, 30.0, 100.0)  # five rates spanning 2 decades


@dataclass(frozen=True)
class AdapterGrid:
    """What one profile runs for the adapter claims: rank fractions of min(in, out), adapter kinds, learning
    rates of the adapters and of full fine-tuning, steps per run and number of seeds, for RL and for the SFT
    grid."""

    rank_fractions: tuple[float, ...]
    kinds: tuple[str, ...]
    lrs: tuple[float, ...]
    full_lrs: tuple[float, ...]
    steps: int
    seeds: int
    sft_rank_fractions: tuple[float, ...]
    sft_kinds: tuple[str, ...]
    sft_lrs: tuple[float, ...]
    sft_full_lrs: tuple[float, ...]
    sft_steps: int

    @classmethod
    def derived(cls, p) -> "AdapterGrid":
        """The grid of a profile that gives none, from its own fields: adapter rates on half decades from the
        profile's RL rate to 100 times it (LoRA's usual 10x sits in the middle), full RL at 1, 3 and 10 times it,
        SFT likewise from the SFT rate; rank fraction 1/4; max(sweep_steps, max_steps / 5) RL steps and 4 times
        that for SFT (an SFT step costs about a third of an RL step); at most 3 seeds."""
        steps = max(p.sweep_steps, p.max_steps // 5)
        return cls(rank_fractions=(1 / 4,), kinds=ADAPTER_KINDS, lrs=tuple(round_lr(p.rl_lr * f) for f in HALF_DECADES),
                   full_lrs=tuple(round_lr(p.rl_lr * f) for f in HALF_DECADES[:3]), steps=steps,
                   seeds=min(3, len(p.seeds)), sft_rank_fractions=(1 / 4,), sft_kinds=("lora", "pissa"),
                   sft_lrs=tuple(round_lr(p.sft_lr * f) for f in HALF_DECADES),
                   sft_full_lrs=tuple(round_lr(p.sft_lr * f) for f in HALF_DECADES[:3]), sft_steps=4 * steps)


ADAPTER_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FULL_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # full RL over 2 decades one decade below the adapters' (its best must be bracketed)
ISSUE_RANK_FRACTIONS = (1 / 16, 1 / 4, 1 / 2)  # ranks 2, 8, 16 on the tiny base (d_model 32), 4, 16, 32 on the small one


@dataclass(frozen=True)
class PhaseGrid:
    """regime.phase: learning rates (>= 4 decades except on tiny), steps per run, number of seeds."""

    lrs: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    steps: int = 100
    seeds: int = 3


def widened(b: BaseConfig, width: int) -> BaseConfig:
    """Base ``b`` at another width: d_ff = 2 d_model, heads of 16 dimensions (at least 2), the same depth, corpus
    and pretraining steps; the pretraining lr scaled by sqrt(32 / width) (Adam's stable step shrinks with width).
    ``b`` at its own width is returned unchanged."""
    if width == b.model.d_model:
        return b
    model = dataclasses.replace(b.model, d_model=width, d_ff=2 * width, n_heads=max(2, width // 16))
    train = dataclasses.replace(b.train, lr=b.train.lr * math.sqrt(b.model.d_model / width))
    return BaseConfig(model, b.corpus, train)


@dataclass(frozen=True)
class Rung:
    """One rung of the regime ladder (regime.ladder): a base of ``width`` d_model and ``depth`` layers, pretrained
    like the profile's base on its corpus with each answer right with probability ``correct_rate`` (the headroom
    axis: a lower rate leaves a lower pass@1 while pass@8 stays high)."""

    width: int
    depth: int = 1
    correct_rate: float = 0.5

    @property
    def name(self) -> str:
        """'w<width>-d<depth>-c<correct rate in %>', e.g. 'w64-d1-c50'."""
        return f"w{self.width}-d{self.depth}-c{round(100 * self.correct_rate)}"

    def base(self, root: BaseConfig, seed: int) -> BaseConfig:
        """This rung's base built from ``root`` and pretrained with ``seed``: ``root`` at the rung's width
        (``widened``), with the rung's depth and corpus correct rate."""
        b = widened(root, self.width)
        return BaseConfig(dataclasses.replace(b.model, n_layers=self.depth),
                          dataclasses.replace(b.corpus, correct_rate=self.correct_rate),
                          dataclasses.replace(b.train, seed=seed))


@dataclass(frozen=True)
class LadderGrid:
    """regime.ladder: the rungs, the independent bases per rung (pretraining seeds = the profile's first ``bases``
    seeds, one RL run each with the same seed), the per-step ratio from which each base's RL rate is derived
    (``train.lr_rule=step_ratio``: the rlvr rule on that base's own median |w|), the RL step cap, and the base
    the rungs are built from (a profile built on one rung keeps the ladder of the profile it came from).
    Default rungs: width 32 to 512 (1 layer, corpus correct rate 0.5), depth 2 and 4 at width 64, and the lower
    headroom of correct rate 0.25 at widths 32 and 128."""

    rungs: tuple[Rung, ...] = (Rung(32), Rung(64), Rung(128), Rung(256), Rung(512), Rung(64, depth=2),
                               Rung(64, depth=4), Rung(32, correct_rate=0.25), Rung(128, correct_rate=0.25))
    bases: int = 3
    step_ratio: float = 0.03  # the rlvr rule's target (verify/profiles.py RLVR_TARGET_STEP_RATIO)
    max_steps: int = 3000
    root: BaseConfig | None = None  # the base the rungs are built from (None: the profile's base)
    # resume checkpoints (no effect on results): fixed here, not by the profile's step caps, so a profile built on a
    # rung with other caps keeps the ladder's runs
    checkpoint_every: int = 1000
