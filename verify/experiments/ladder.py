"""The regime ladder's run set (regime.ladder, verify/claims/ladder.py): bases along width, depth and headroom,
each pretrained from several independent seeds, and one RL run per base at a published per-step ratio to the
profile's target gain.

Rate rule (written before the runs, docs/science.md section 6): every run's learning rate is the ``rlvr`` rule
(``toy_models.optim.lr_for_step_ratio``) on the median |w| of its own base's weight matrices at the ladder's
``step_ratio``, set by the trainer when the base is loaded (``train.lr_rule=step_ratio``), so a rung never borrows
another base's rate.
"""

from __future__ import annotations

from toy_models.finetune import RunSpec
from toy_models.pretrain import BaseConfig
from verify.knobs import Rung


def rung_base(p, rung: Rung, seed: int) -> BaseConfig:
    """The base of ``rung`` pretrained with ``seed``, built from the ladder's root (``ladder_grid.root``, default the
    profile's base): ``Rung.base``."""
    return rung.base(p.ladder_grid.root or p.base, seed)


def ladder_run(p, rung: Rung, seed: int) -> RunSpec:
    """The RL run (grpo_kl, fp32 master weights) of the base of ``rung`` and ``seed``: the ladder's step ratio as
    its rate rule, the ladder's step cap and resume-checkpoint spacing, the profile's target gain and batch."""
    g = p.ladder_grid
    spec = p.rl(seed, base=rung_base(p, rung, seed), lr=g.step_ratio, steps=g.max_steps, lr_rule="step_ratio")
    return spec.replace(train__checkpoint_every=g.checkpoint_every)


def ladder(p) -> dict[str, tuple[RunSpec, ...]]:
    """{rung name: the RL runs of its bases, one per seed of the profile's first ``ladder_grid.bases`` seeds}."""
    g = p.ladder_grid
    return {r.name: tuple(ladder_run(p, r, s) for s in p.seeds[: g.bases]) for r in g.rungs}
