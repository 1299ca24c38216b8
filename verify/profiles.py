"""Verification profiles: how big the base model is, how many seeds, how long each run may train, and the
typed ``RunSpec`` of every run a claim asks for.

Learning rates follow rules fixed before any verdict was read:
- RL (``quick``, ``full``): the largest of {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} below half the bf16 ULP of the
  median base weight (|w| ~ 0.1 here, ULP/2 ~ 2e-4), so that one Adam step is sub-ULP for most weights,
  the regime the paper describes (its runs: AdamW at 1e-6 on weights of about 1e-2). That gives 1e-4
  (``toy_models.finetune.RL_LR``).
- DPO and SimPO: the RL rate and step cap (on the quick profile both reach +10 points in 70 steps at 1e-4).
- SFT: the smallest of the same grid that reaches the target gain within the step cap on the tiny base
  (3e-4 did not within 800 steps; 1e-3 did in about 440): ``toy_models.finetune.SFT_LR``. SFT must first
  learn the unseen scratchpad format, so it needs larger steps than RL.

Every knob of a claim that differs by profile is a typed field here (``verify.knobs``), so a new profile is one
entry of ``PROFILES``; a knob it does not give is derived from its other fields by the rule written beside
the knob.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from toy_models.config import ConfigError
from toy_models.finetune import FINETUNE_PRESETS, RL_LR, SFT_LR, RunSpec
from toy_models.optim import ADAM_NOISE_STEP, lr_for_step_ratio  # noqa: F401  (ADAM_NOISE_STEP: the sweeps' SGD rule)
from toy_models.pretrain import PRESETS as BASE_PRESETS, BaseConfig
from verify.knobs import (
    ADAPTER_KINDS,
    ADAPTER_LRS,
    FULL_LRS,
    ISSUE_RANK_FRACTIONS,
    AdapterGrid,
    CaseSizes,
    LadderGrid,
    PhaseGrid,
    Rung,
    round_lr,
)


RLVR_TARGET_STEP_RATIO = 0.03  # the middle of the published band 0.016 to 0.033 (docs/science.md, 'Regime')
TINY_BASE_MEDIAN_ABS_W = 0.1235  # median |w| over the weight matrices of the tiny base (docs/science.md, 'Regime' table)
# The published profile (issue 22) is built on the regime ladder's rung chosen by the rule of docs/science.md
# section 6 on `python -m verify regime.ladder --profile quick` (2026-12-06): no rung reached drift 0.5, the lowest
# mean drift was w256-d1-c50's, and no cheaper rung's mean lay inside its interval.
PUBLISHED_RUNG = Rung(256)
PUBLISHED_BASE_MEDIAN_ABS_W = 0.0593  # median |w| over the weight matrices of that rung's seed-0 base (measured)


def rlvr_lr(median_abs_w: float, target_step_ratio: float = RLVR_TARGET_STEP_RATIO) -> float:
    """The RL learning rate whose Adam step is ``target_step_ratio`` half-ULPs of the median weight.

    Rule (fixed before any verdict of the rlvr profile was read): Adam moves a coordinate by lr |m/sqrt(v)|
    per step; for RL gradients, which are mostly noise from one step to the next, |m/sqrt(v)| is about its
    zero-mean i.i.d. value sqrt((1 - b1) / (1 + b1)) = 0.229 (b1 = 0.9). So the per-step change in units of
    half a bf16 ULP of the median weight is lr * 0.229 / half_ulp(median |w|); solve for the target and
    round to two significant digits (``toy_models.optim.lr_for_step_ratio``, which the trainer applies itself to
    runs with ``train.lr_rule=step_ratio``). The measured step ratio of every run is reported beside its verdicts."""
    return lr_for_step_ratio(median_abs_w, target_step_ratio)


def base_config(preset: str, *, corpus: dict | None = None, train: dict | None = None, model: dict | None = None) -> BaseConfig:
    """A base-model preset with typed field changes per section."""
    b = BASE_PRESETS[preset]
    return BaseConfig(dataclasses.replace(b.model, **(model or {})), dataclasses.replace(b.corpus, **(corpus or {})),
                      dataclasses.replace(b.train, **(train or {})))


@dataclass(frozen=True)
class Profile:
    """A verification profile: the base, the seeds, learning rates, step caps, the matched target gain, the batch
    shape, and the claims' knobs (typed; ``None`` where a knob is derived from the other fields)."""

    name: str
    base: BaseConfig
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
    description: str = ""
    case_sizes: CaseSizes | None = None  # case-study runs (C4, C12, C14); None: CaseSizes.derived
    adapter_grid: AdapterGrid | None = None  # adapters.grid and adapters.approximation; None: AdapterGrid.derived
    phase_grid: PhaseGrid = PhaseGrid()  # regime.phase
    widths: tuple[int, ...] = (32, 64, 128, 256)  # regime.width: d_model of the bases
    ladder_grid: LadderGrid = LadderGrid()  # regime.ladder: rungs, bases per rung, step ratio, step cap
    # geometry.intervention's SGD rate rule: (sqrt(n_grad), |g_1|), the medians over the profile's main RL runs of
    # norm/update / lr and of norm/grad at step 1; None: derived (verify.experiments.cases.sgd_lr)
    sgd_first_step: tuple[float, float] | None = None
    # equal update size (docs/science.md section 6): steps of the SFT run at the RL rate whose snapshots (one every
    # eval_every steps) are read at the RL runs' update size; None: 0.4 max_steps rounded to eval_every (quick: 160,
    # where SFT at lr 1e-4 reaches twice the quick RL runs' median drift ratio and ||dW|| / ||W||, measured 2026-12-06)
    size_steps: int | None = None
    # RL from the random init (control.random_base): steps; None: 0.3 max_steps rounded to eval_every (quick: 120,
    # the median stop of the matched RL runs)
    random_base_steps: int | None = None

    @property
    def equal_size_steps(self) -> int:
        """Steps of the SFT run at the RL rate read at equal update size: ``size_steps`` or its rule."""
        ev = self.eval_every
        return self.size_steps or max(3 * ev, round(0.4 * self.max_steps / ev) * ev)

    @property
    def random_init_steps(self) -> int:
        """Steps of the RL runs from the random init: ``random_base_steps`` or its rule."""
        ev = self.eval_every
        return self.random_base_steps or max(ev, round(0.3 * self.max_steps / ev) * ev)

    @property
    def cases(self) -> CaseSizes:
        """The case-study sizes: ``case_sizes``, or the rule of ``CaseSizes.derived``."""
        return self.case_sizes or CaseSizes.derived(self)

    @property
    def adapters(self) -> AdapterGrid:
        """The adapter grid: ``adapter_grid``, or the rule of ``AdapterGrid.derived``."""
        return self.adapter_grid or AdapterGrid.derived(self)

    def spec(self, method: str, seed: int, *, preset: str | None = None, lr: float | None = None,
             steps: int | None = None, matched: bool = True, precision: str | None = None,
             base: BaseConfig | None = None, rl: dict | None = None, **train) -> RunSpec:
        """The RunSpec of a run of this profile: ``method`` 'rl' | 'sft' | 'sft_onpolicy' | 'dpo' | 'simpo', a preset
        (default grpo_kl / sft / sft_onpolicy / dpo / simpo), the profile's lr and step cap (RL's for rl, dpo and
        simpo, SFT's for the others) and target gain unless given, the storage ``precision`` of ``FinetuneConfig``
        (fp32_master) unless given; ``rl`` and ``train`` change RLConfig / FinetuneConfig fields (typed values)."""
        preset = preset or {"rl": "grpo_kl"}.get(method, method)
        rl_cfg, t = FINETUNE_PRESETS[preset]
        is_rl = t.method in ("rl", "dpo", "simpo")  # at the RL rate and step cap
        if lr is None:
            lr = self.rl_lr if is_rl else self.sft_lr
        if steps is None:
            steps = self.max_steps if is_rl else self.sft_max_steps
        rl_cfg = dataclasses.replace(rl_cfg, prompts_per_step=self.prompts_per_step, num_generations=self.num_generations,
                                     **(rl or {}))
        if precision is not None:
            train["precision"] = precision
        t = dataclasses.replace(t, seed=seed, lr=lr, max_steps=steps,
                                target_gain=self.target_gain if matched else None, eval_every=self.eval_every,
                                eval_problems=self.eval_problems, probe_size=self.probe_size,
                                pool_per_task=self.pool_per_task, checkpoint_every=max(self.max_steps, self.sft_max_steps),
                                **train)
        return RunSpec(base or self.base, rl_cfg, t)

    def rl(self, seed: int, **kw) -> RunSpec:
        """An RL run (grpo_kl unless ``preset`` says otherwise) at the profile's RL learning rate."""
        return self.spec("rl", seed, **kw)

    def sft(self, seed: int, **kw) -> RunSpec:
        """An SFT run on demonstrations at the profile's SFT learning rate."""
        return self.spec("sft", seed, **kw)

    def control(self, seed: int, preset: str = "grpo_kl") -> RunSpec:
        """The Gate I control run: RL far above the leash (``control_lr``) for ``control_steps`` steps."""
        return self.rl(seed, lr=self.control_lr, steps=self.control_steps, matched=False, preset=preset)

    def random_base(self) -> BaseConfig:
        """The profile's base config with 0 pretraining steps (the random initialisation)."""
        return dataclasses.replace(self.base, train=dataclasses.replace(self.base.train, steps=0))


PROFILES: dict[str, Profile] = {
    "tiny": Profile("tiny", base_config("tiny", corpus={"n_examples": 1000}, train={"steps": 300, "eval_problems": 32}),
                    seeds=(0, 1), rl_lr=1e-3, sft_lr=3e-3, max_steps=12, sft_max_steps=12, target_gain=0.9,
                    eval_every=4, eval_problems=16, probe_size=16, pool_per_task=64, prompts_per_step=4,
                    num_generations=4, lr_sweep=(1e-5, 1e-2), sweep_steps=6, control_lr=0.05, control_steps=4,
                    description="for CI: every claim runs end to end in seconds; verdicts are not meant to be read",
                    case_sizes=CaseSizes(rl_steps=32, rl_snapshot_every=4, sft_steps=32, sft_snapshot_every=4,
                                         curve_every=8, seeds=2),
                    # CI: ranks 1 and 2, the SVD-free kinds (lora, pissa and milora of one rank share one compiled step;
                    # offprincipal would add a program per rank, about 40 s of compilation each on 2 cores), one rate
                    # per decade over 2 decades (at the top one, 0.1, adapters collapse), full RL at two rates; the SFT
                    # grid on lora and pissa at rank 1 only.
                    adapter_grid=AdapterGrid(rank_fractions=(1 / 32, 1 / 16), kinds=("lora", "pissa", "milora"),
                                             lrs=(1e-3, 1e-2, 1e-1), full_lrs=(1e-3, 1e-2), steps=6, seeds=2,
                                             sft_rank_fractions=(1 / 32,), sft_kinds=("lora", "pissa"),
                                             sft_lrs=(1e-3, 1e-2), sft_full_lrs=(3e-3,), sft_steps=6),
                    phase_grid=PhaseGrid(lrs=(1e-5, 1e-3, 1e-1), steps=6, seeds=2), widths=(16, 32),
                    ladder_grid=LadderGrid(rungs=(Rung(16), Rung(64), Rung(16, correct_rate=0.25)), bases=2, max_steps=12),
                    sgd_first_step=(101.1, 1.48)),
    "quick": Profile("quick", base_config("tiny"), seeds=(0, 1, 2, 3, 4), rl_lr=RL_LR, sft_lr=SFT_LR, max_steps=400,
                     sft_max_steps=1000, target_gain=0.10, eval_every=10, eval_problems=64, probe_size=32,
                     pool_per_task=512, prompts_per_step=16, num_generations=8, lr_sweep=(1e-5, 1e-4, 1e-3, 1e-2),
                     sweep_steps=40, control_lr=0.05, control_steps=10,
                     description="the tiny base (d_model 32), 5 seeds, RL and SFT stopped at +10 points",
                     case_sizes=CaseSizes(rl_steps=80, rl_snapshot_every=10, sft_steps=320, sft_snapshot_every=40,
                                          curve_every=20, seeds=3),
                     # the issue's RL grid (4 kinds x ranks 2/8/16 x 5 rates over 2 decades x 3 seeds, full RL over 5
                     # rates); the SFT context grid (reported, not decided) at the middle rank only: ranks 2 and 16 of
                     # SFT live in `full`.
                     adapter_grid=AdapterGrid(rank_fractions=ISSUE_RANK_FRACTIONS, kinds=ADAPTER_KINDS, lrs=ADAPTER_LRS,
                                              full_lrs=FULL_LRS, steps=80, seeds=3, sft_rank_fractions=(1 / 4,),
                                              sft_kinds=("lora", "pissa"), sft_lrs=ADAPTER_LRS,
                                              sft_full_lrs=(1e-3, 3e-3, 1e-2), sft_steps=300),
                     phase_grid=PhaseGrid(lrs=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), steps=60, seeds=3), widths=(32, 64),
                     sgd_first_step=(103.5, 0.836)),
    "full": Profile("full", base_config("small"), seeds=(0, 1, 2, 3, 4), rl_lr=RL_LR, sft_lr=SFT_LR, max_steps=800,
                    sft_max_steps=2000, target_gain=0.10, eval_every=10, eval_problems=128, probe_size=64,
                    pool_per_task=2048, prompts_per_step=16, num_generations=8,
                    lr_sweep=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), sweep_steps=60, control_lr=0.05, control_steps=10,
                    description="the small base (d_model 64), 5 seeds, RL and SFT stopped at +10 points",
                    adapter_grid=AdapterGrid(rank_fractions=ISSUE_RANK_FRACTIONS, kinds=ADAPTER_KINDS, lrs=ADAPTER_LRS,
                                             full_lrs=FULL_LRS, steps=160, seeds=3,
                                             sft_rank_fractions=ISSUE_RANK_FRACTIONS, sft_kinds=ADAPTER_KINDS,
                                             sft_lrs=ADAPTER_LRS, sft_full_lrs=(1e-3, 3e-3, 1e-2), sft_steps=600)),
    "rlvr": Profile("rlvr", base_config("tiny"), seeds=(0, 1, 2), rl_lr=rlvr_lr(TINY_BASE_MEDIAN_ABS_W),
                    sft_lr=round_lr(10 * rlvr_lr(TINY_BASE_MEDIAN_ABS_W)), max_steps=3000, sft_max_steps=6000, target_gain=0.10,
                    eval_every=20, eval_problems=64, probe_size=32, pool_per_task=512, prompts_per_step=16,
                    num_generations=8, lr_sweep=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), sweep_steps=60, control_lr=0.05,
                    control_steps=10,
                    description="the tiny base at a published-RLVR step size: RL lr by rlvr_lr (measured step ratio "
                                "in 0.01-0.05), SFT at 10x, both to +10 points"),
    # the regime ladder's rung closest to the published drift (its seed-0 base), RL by rlvr_lr on that base, SFT at
    # 10x; batch, evaluation and target gain as quick's, so its ladder (rooted at the tiny base) is quick's
    "published": Profile("published", PUBLISHED_RUNG.base(base_config("tiny"), 0), seeds=(0, 1, 2),
                         rl_lr=rlvr_lr(PUBLISHED_BASE_MEDIAN_ABS_W), sft_lr=round_lr(10 * rlvr_lr(PUBLISHED_BASE_MEDIAN_ABS_W)),
                         max_steps=1000, sft_max_steps=4000, target_gain=0.10, eval_every=10, eval_problems=64,
                         probe_size=32, pool_per_task=512, prompts_per_step=16, num_generations=8,
                         lr_sweep=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), sweep_steps=60, control_lr=0.05, control_steps=10,
                         ladder_grid=LadderGrid(root=base_config("tiny")),
                         description=f"the regime ladder's rung {PUBLISHED_RUNG.name} (the closest to the published drift "
                                     "on 2 cores), 3 seeds, RL lr by rlvr_lr on its base, SFT at 10x, both to +10 points; "
                                     "regime.ladder across 3 bases a rung"),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; an unknown name is refused with the known ones."""
    if name not in PROFILES:
        raise ConfigError(f"Unknown profile {name!r}; known profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]
