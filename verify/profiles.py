"""Verification profiles: how big the base model is, how many seeds, how long each run may train.

Learning rates follow two rules fixed before any verdict was read:
- RL: the largest of {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} below half the bf16 ULP of the median base weight
  (|w| ~ 0.1 here, ULP/2 ~ 2e-4), so that one Adam step is sub-ULP for most weights, the regime the
  paper describes (its runs: AdamW at 1e-6 on weights of about 1e-2). That gives 1e-4.
- SFT: the smallest of the same grid that reaches the target gain within the step cap on the tiny
  base (3e-4 did not within 800 steps; 1e-3 did in about 440). SFT must first learn the unseen
  scratchpad format, so it needs larger steps than RL.
"""

from __future__ import annotations

from dataclasses import dataclass

from toy_models.config import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    base_preset: str
    base_overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    rl_lr: float
    sft_lr: float
    max_steps: int
    sft_max_steps: int
    target_gain: float
    eval_every: int
    eval_problems: int
    probe_size: int
    pool_per_task: int
    prompts_per_step: int
    num_generations: int
    lr_sweep: tuple[float, ...]
    sweep_steps: int
    control_lr: float  # a learning rate far above the leash, for the Gate I controls
    control_steps: int

    def finetune_overrides(self) -> list[str]:
        """Overrides shared by every fine-tuning run of this profile."""
        return [
            f"train.eval_every={self.eval_every}", f"train.eval_problems={self.eval_problems}",
            f"train.probe_size={self.probe_size}", f"train.pool_per_task={self.pool_per_task}",
            f"rl.prompts_per_step={self.prompts_per_step}", f"rl.num_generations={self.num_generations}",
            f"train.checkpoint_every={max(self.max_steps, self.sft_max_steps)}",
        ] + [f"base.{o}" for o in self.base_overrides]


PROFILES: dict[str, Profile] = {
    # for CI: every claim runs end to end in seconds; verdicts are not meant to be read
    "tiny": Profile("tiny", "tiny", ("train.steps=300", "corpus.n_examples=1000", "train.eval_problems=32"),
                    seeds=(0, 1), rl_lr=1e-3, sft_lr=3e-3, max_steps=12, sft_max_steps=12, target_gain=0.9,
                    eval_every=4, eval_problems=16, probe_size=16, pool_per_task=64, prompts_per_step=4,
                    num_generations=4, lr_sweep=(1e-5, 1e-2), sweep_steps=6, control_lr=0.05, control_steps=4),
    "quick": Profile("quick", "tiny", (), seeds=(0, 1, 2, 3, 4), rl_lr=1e-4, sft_lr=1e-3, max_steps=400,
                     sft_max_steps=1000, target_gain=0.10, eval_every=10, eval_problems=64, probe_size=32,
                     pool_per_task=512, prompts_per_step=16, num_generations=8, lr_sweep=(1e-5, 1e-4, 1e-3, 1e-2),
                     sweep_steps=40, control_lr=0.05, control_steps=10),
    "full": Profile("full", "small", (), seeds=(0, 1, 2, 3, 4), rl_lr=1e-4, sft_lr=1e-3, max_steps=800,
                    sft_max_steps=2000, target_gain=0.10, eval_every=10, eval_problems=128, probe_size=64,
                    pool_per_task=2048, prompts_per_step=16, num_generations=8,
                    lr_sweep=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), sweep_steps=60, control_lr=0.05, control_steps=10),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name is refused with the known ones."""
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile {name!r}; known profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]
