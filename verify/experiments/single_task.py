"""Fine-tuning on one task (docs/science.md section 6, 'Preference training and forgetting'): every method the suite
has, from the profile's base, trained and evaluated on one task only, so that what it costs on the base's other tasks
(forgetting) and how its update looks (C13's signatures) can be read side by side.

``SingleTask`` holds, per seed: RL (grpo_kl), SFT on demonstrations, on-policy SFT, DPO and SimPO stopped at the
profile's target gain on the task's held-out problems; RL at the SFT rate to the same gain (the step-size placebo);
and SFT at the RL rate for ``equal_size_steps`` steps with a snapshot at every evaluation (read at another run's
update size). Rates and step caps are the profile's (RL, DPO, SimPO: RL's; SFT and on-policy SFT: SFT's).

Two settings differ from the all-task runs, by rules written before the runs: the training pool and the held-out set
have as many problems as the all-task runs draw from and evaluate (``pool_per_task`` and ``eval_problems`` times the
base's task count, all of the one task), so the matched stop is read as precisely and DPO and SimPO find as many pairs;
and the runs evaluate every ``eval_every`` / 5 steps, since on this task on-policy SFT and
RL at the SFT rate pass +10 points within a few steps (at every 10 steps on quick they stopped at +0.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from toy_models.finetune import RunSpec

TASK = "sort"  # gained most in the all-task matched runs; with add, RL, DPO and SimPO missed +10 points in 400 steps
EVAL_EVERY_DIVISOR = 5


@dataclass(frozen=True)
class SingleTask:
    """Runs on ``task`` only; ``rl[i]``, ``sft[i]``, ... are the runs of seed ``seeds[i]``."""

    task: str
    seeds: tuple[int, ...]
    rl: tuple[RunSpec, ...]
    sft: tuple[RunSpec, ...]
    sft_onpolicy: tuple[RunSpec, ...]
    dpo: tuple[RunSpec, ...]
    simpo: tuple[RunSpec, ...]
    placebo: tuple[RunSpec, ...]
    sft_size: tuple[RunSpec, ...]

    @property
    def matched(self) -> dict[str, tuple]:
        """{role: runs} of every run stopped at the target gain (the units of forgetting.predictor)."""
        return {"rl": self.rl, "sft": self.sft, "sft_onpolicy": self.sft_onpolicy, "dpo": self.dpo,
                "simpo": self.simpo, "placebo: rl at the sft rate": self.placebo}


def eval_every(p) -> int:
    """Steps between evaluations of the single-task runs: the profile's ``eval_every`` / 5 (at least 1)."""
    return max(1, p.eval_every // EVAL_EVERY_DIVISOR)


def task_spec(p, method: str, seed: int, task: str = TASK, **kw) -> RunSpec:
    """A run of ``method`` on ``task`` alone: ``Profile.spec`` with the pool, held-out set and evaluation interval above."""
    n = len(p.base.corpus.tasks)
    spec = p.spec(method, seed, tasks=(task,), **kw)
    return spec.replace(train__eval_every=eval_every(p), train__eval_problems=p.eval_problems * n,
                        train__pool_per_task=p.pool_per_task * n)


def single_task(p, seeds=None, task: str = TASK) -> SingleTask:
    """The single-task run set of profile ``p`` for ``seeds`` (default: the profile's seeds)."""
    seeds = tuple(p.seeds if seeds is None else seeds)
    every, steps = eval_every(p), p.equal_size_steps
    size = tuple(task_spec(p, "sft", s, task, lr=p.rl_lr, steps=steps, matched=False,
                           snapshot_steps=tuple(range(every, steps + 1, every))) for s in seeds)
    return SingleTask(task, seeds, *(tuple(task_spec(p, m, s, task) for s in seeds)
                                     for m in ("rl", "sft", "sft_onpolicy", "dpo", "simpo")),
                      tuple(task_spec(p, "rl", s, task, lr=p.sft_lr) for s in seeds), size)
