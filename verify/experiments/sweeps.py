"""The regime map's run sets (verify/claims/regime_map.py): the learning-rate phase grid of RL and SFT, RL at
matched gain on bases of growing width, and RL and SFT at matched gain under three optimizers plus on-policy
SFT. Each rate rule is written beside the set that uses it."""

from __future__ import annotations

import math

from toy_models.finetune import RunSpec
from toy_models.pretrain import BaseConfig
from toy_models.transformer import flat_params, init_params
from verify.knobs import round_lr, widened
from verify.profiles import ADAM_NOISE_STEP

WIDTH_SEEDS = 3  # no empirical claim on fewer (tiny, with 2 seeds, runs 2)
SGD_SCALES = (1.0, 10.0)  # candidate multipliers of the norm-matched SGD learning rate
GRAD_NORM = {"rl": 1.5, "sft": 3.0}  # median gradient norms of the tiny profile's runs (norm/grad in metrics.jsonl)
OPT_SEEDS = 3


def phase_grid(p) -> dict[str, tuple[RunSpec, ...]]:
    """{'rl': runs, 'sft': runs}: each method at every rate of ``p.phase_grid`` for its fixed steps (no matched
    stop), over its first seeds; rate-major order."""
    ph = p.phase_grid
    return {m: tuple(p.spec(m, s, lr=lr, steps=ph.steps, matched=False) for lr in ph.lrs for s in p.seeds[: ph.seeds])
            for m in ("rl", "sft")}


def width_base(p, width: int) -> BaseConfig:
    """The profile's base at another width (``widened``)."""
    return widened(p.base, width)


def width_lr(p, width: int) -> float:
    """The RL learning rate at a width: the profile's rate times sqrt(d0 / width), which keeps lr / half-ULP of
    the median weight about constant (initial weights scale as 1 / sqrt(fan-in)); the measured step ratio is
    reported per width."""
    return round_lr(p.rl_lr * math.sqrt(p.base.model.d_model / width))


def widths(p) -> dict[int, tuple[RunSpec, ...]]:
    """{d_model: matched RL runs of the first WIDTH_SEEDS seeds on the base of that width at ``width_lr``}."""
    return {w: tuple(p.rl(s, lr=width_lr(p, w), base=width_base(p, w)) for s in p.seeds[:WIDTH_SEEDS])
            for w in p.widths}


def sgd_lr(p, method: str, scale: float) -> float:
    """SGD learning rate matched to AdamW's update norm: AdamW moves each of N coordinates by about
    lr * 0.229 (zero-mean noise), a norm of lr * 0.229 * sqrt(N); SGD moves by lr_sgd * |g|. So lr_sgd =
    scale * lr_adam * 0.229 sqrt(N) / |g| with |g| the median gradient norm of that method's runs on the tiny
    base (GRAD_NORM). The claim uses the smallest scale whose runs all reach the target gain."""
    n = sum(v.size for v in flat_params(init_params(p.base.model, 0)[1]).values())
    lr = p.rl_lr if method == "rl" else p.sft_lr
    return round_lr(scale * lr * ADAM_NOISE_STEP * math.sqrt(n) / GRAD_NORM[method])


def optimizers(p) -> dict[tuple[str, str], tuple[RunSpec, ...]]:
    """{(method, optimizer name): matched runs of the first OPT_SEEDS seeds}: RL and SFT under AdamW, Adam with
    eps 1e-5 and SGD at every scale of SGD_SCALES (``sgd_lr``), and on-policy SFT under AdamW; and
    ('rl_next_seed', optimizer) for AdamW and every SGD scale: RL of the seed after the first OPT_SEEDS (none when
    the profile has no more seeds), so that RL of seeds 2..OPT_SEEDS + 1 can play SFT's role against RL of seeds
    1..OPT_SEEDS (a null that a cyclic shift, whose differences sum to 0, could never fail)."""
    seeds, extra = p.seeds[:OPT_SEEDS], p.seeds[OPT_SEEDS:OPT_SEEDS + 1]
    out = {}
    for m in ("rl", "sft"):
        out[(m, "adamw")] = tuple(p.spec(m, s) for s in seeds)
        out[(m, "adam eps 1e-5")] = tuple(p.spec(m, s, eps=1e-5) for s in seeds)
        for c in SGD_SCALES:
            out[(m, f"sgd x{c:g}")] = tuple(p.spec(m, s, optimizer="sgd", lr=sgd_lr(p, m, c)) for s in seeds)
    out[("sft_onpolicy", "adamw")] = tuple(p.spec("sft_onpolicy", s) for s in seeds)
    out[("rl_next_seed", "adamw")] = tuple(p.spec("rl", s) for s in extra)
    for c in SGD_SCALES:
        out[("rl_next_seed", f"sgd x{c:g}")] = tuple(p.spec("rl", s, optimizer="sgd", lr=sgd_lr(p, "rl", c)) for s in extra)
    return out
