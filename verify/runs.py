"""The run cache shared by all claims: the base model and the RL and SFT runs, each trained once per config.

Runs are cached on disk by toy_models (a folder per config hash under $THREEGATE_RUNS) and in memory
for one verify call, so several claims read the same runs and a repeated call trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toy_models.finetune import RunResult, finetune, run_preset
from toy_models.pretrain import Base, pretrain
from verify.profiles import Profile


@dataclass
class Context:
    """What a claim needs: the profile, the cache of runs, and where to put figures."""

    profile: Profile
    out_dir: Path
    quiet: bool = True
    _memo: dict = field(default_factory=dict)

    @property
    def figures(self) -> Path:
        path = self.out_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def base(self) -> Base:
        """The pretrained base model of the profile (trained once, then cached)."""
        if "base" not in self._memo:
            cfg = run_preset("sft", self.profile.base_preset, [f"base.{o}" for o in self.profile.base_overrides]).base
            self._memo["base"] = pretrain(cfg, quiet=self.quiet)
        return self._memo["base"]

    def run(self, method: str, seed: int, *, precision: str = "fp32_master", lr: float | None = None,
            steps: int | None = None, matched: bool = True, preset: str | None = None, extra=()) -> RunResult:
        """A fine-tuning run of ``method`` ('rl' or 'sft'); ``matched`` stops at the profile's target gain."""
        p = self.profile
        preset = preset or ("grpo_kl" if method == "rl" else "sft")
        lr = lr if lr is not None else (p.rl_lr if method == "rl" else p.sft_lr)
        steps = steps if steps is not None else (p.max_steps if method == "rl" else p.sft_max_steps)
        overrides = p.finetune_overrides() + [
            f"train.seed={seed}", f"train.precision={precision}", f"train.lr={lr}", f"train.max_steps={steps}",
            f"train.target_gain={p.target_gain if matched else 'none'}", *extra,
        ]
        cfg = run_preset(preset, p.base_preset, overrides)
        key = ("run", cfg)
        if key not in self._memo:
            base = self.base() if cfg.base == self.base().cfg else pretrain(cfg.base, quiet=self.quiet)
            self._memo[key] = finetune(cfg, base=base, quiet=self.quiet)
        return self._memo[key]

    def rl(self, seed: int, **kw) -> RunResult:
        return self.run("rl", seed, **kw)

    def sft(self, seed: int, **kw) -> RunResult:
        return self.run("sft", seed, **kw)
