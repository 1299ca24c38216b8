"""The GRPO family: group advantages, a clipped surrogate with a KL anchor, loss aggregation modes.

Names follow TRL / tunix: ``num_generations`` samples per prompt, ``beta`` (KL weight), ``epsilon``
and ``epsilon_high`` (clip range [1 - epsilon, 1 + epsilon_high]), ``num_iterations`` (inner updates
per sampled batch), ``kl_estimator`` k1/k2/k3, ``advantage_estimator`` grpo/drgrpo/rloo and
``loss_agg``. DAPO-like and Dr.GRPO-like recipes are presets of the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from theory.kl import kl_estimate, kl_tilted
from toy_models.config import check
from toy_models.metrics import completion_logp, entropy_token_mean, exact_kl_token_mean, masked_mean
from toy_models.reward import verify_tokens
from toy_models.sampling import sample
from toy_models.optim import apply_update
from toy_models.steps import StepData, StepOut, StepStatics, constrain, finish_step, materialize

LOG_RATIO_CLAMP = 20.0
MAX_SEQUENCES_PER_STEP = 16_384  # sampled or demonstration sequences in one step (RL, on-policy SFT and SFT)
MAX_GENERATIONS = 1_024


@dataclass(frozen=True)
class RLConfig:
    """Options of the GRPO family. Bounds, refused in one sentence outside them: ``num_generations`` 2 to 1,024;
    ``prompts_per_step`` >= 1 with prompts_per_step x num_generations at most 16,384 sequences per step;
    ``beta`` >= 0; ``epsilon`` and ``epsilon_high`` in (0, 1); ``num_iterations`` 1 to 64; ``temperature`` > 0."""

    num_generations: int = 8
    prompts_per_step: int = 16
    beta: float = 0.04
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    kl_placement: Literal["loss", "reward"] = "loss"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    advantage_estimator: Literal["grpo", "drgrpo", "rloo"] = "grpo"
    loss_agg: Literal["seq_mean", "token_mean", "global_token_mean", "fixed_len"] = "seq_mean"
    temperature: float = 1.0

    def __post_init__(self):
        check(self.num_generations >= 2, "rl.num_generations", f"must be at least 2 (a group needs a baseline), got {self.num_generations}")
        check(self.num_generations <= MAX_GENERATIONS, "rl.num_generations",
              f"must be at most {MAX_GENERATIONS}, got {self.num_generations}")
        check(self.prompts_per_step >= 1, "rl.prompts_per_step", f"must be positive, got {self.prompts_per_step}")
        check(self.prompts_per_step * self.num_generations <= MAX_SEQUENCES_PER_STEP, "rl.prompts_per_step",
              f"times rl.num_generations must be at most {MAX_SEQUENCES_PER_STEP} sequences per step, got "
              f"{self.prompts_per_step} x {self.num_generations}")
        check(self.beta >= 0, "rl.beta", f"must be non-negative, got {self.beta}")
        check(0 < self.epsilon < 1, "rl.epsilon", f"must lie in (0, 1), got {self.epsilon}")
        check(self.epsilon_high is None or 0 < self.epsilon_high < 1, "rl.epsilon_high", f"must lie in (0, 1), got {self.epsilon_high}")
        check(self.kl_estimator in ("k1", "k2", "k3"), "rl.kl_estimator", f"must be k1, k2 or k3, got {self.kl_estimator!r}")
        check(self.kl_placement in ("loss", "reward"), "rl.kl_placement", f"must be 'loss' or 'reward', got {self.kl_placement!r}")
        check(1 <= self.num_iterations <= 64, "rl.num_iterations", f"must lie in 1..64, got {self.num_iterations}")
        check(self.advantage_estimator in ("grpo", "drgrpo", "rloo"), "rl.advantage_estimator",
              f"must be grpo, drgrpo or rloo, got {self.advantage_estimator!r}")
        check(self.loss_agg in ("seq_mean", "token_mean", "global_token_mean", "fixed_len"), "rl.loss_agg",
              f"must be seq_mean, token_mean, global_token_mean or fixed_len, got {self.loss_agg!r}")
        check(self.temperature > 0, "rl.temperature", f"must be positive, got {self.temperature}")

    @property
    def eps_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


def advantages(rewards_PG, estimator: str) -> jnp.ndarray:
    """Per-sample advantages from rewards grouped as (prompts, generations).

    grpo: (r - group mean) / (group std + 1e-4), population std; drgrpo: r - group mean (Dr.GRPO);
    rloo: r - mean of the other G-1 rewards of the group. An all-equal group gives zeros, never NaN.
    """
    r = rewards_PG.astype(jnp.float32)
    G = r.shape[1]
    mean = r.mean(axis=1, keepdims=True)
    if estimator == "grpo":
        return (r - mean) / (r.std(axis=1, keepdims=True) + 1e-4)
    if estimator == "drgrpo":
        return r - mean
    if estimator == "rloo":
        return r - (r.sum(axis=1, keepdims=True) - r) / (G - 1)
    raise ValueError(f"Unknown advantage_estimator {estimator!r}.")


def aggregate(loss_BT, mask_BT, mode: str, num_generations: int) -> jnp.ndarray:
    """Reduce per-token losses to a scalar.

    seq_mean: mean over sequences of each sequence's token mean (GRPO); token_mean: per group, the
    sum over its tokens / its token count, then mean over groups; global_token_mean: sum over every
    token / every token's count (DAPO); fixed_len: sum over every token / (sequences x completion
    length) (Dr.GRPO's constant normaliser).
    """
    m = mask_BT.astype(jnp.float32)
    lm = loss_BT * m
    if mode == "seq_mean":
        return jnp.mean(lm.sum(1) / jnp.maximum(m.sum(1), 1.0))
    if mode == "token_mean":
        B, T = lm.shape
        g_sum = lm.reshape(-1, num_generations * T).sum(1)
        g_cnt = m.reshape(-1, num_generations * T).sum(1)
        return jnp.mean(g_sum / jnp.maximum(g_cnt, 1.0))
    if mode == "global_token_mean":
        return lm.sum() / jnp.maximum(m.sum(), 1.0)
    if mode == "fixed_len":
        return lm.sum() / (lm.shape[0] * lm.shape[1])
    raise ValueError(f"Unknown loss_agg {mode!r}.")


def clipped_surrogate(logp_new_BT, logp_old_BT, adv_B, epsilon: float, epsilon_high: float):
    """Per-token PPO surrogate -min(ratio A, clip(ratio, 1-eps, 1+eps_high) A); log-ratio clamped before exp.

    Returns (loss_BT, clipped_low_BT, clipped_high_BT) where the clip flags mark tokens whose gradient
    the clip removed.
    """
    log_ratio = jnp.clip(logp_new_BT - logp_old_BT, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    a = adv_B[:, None]
    unclipped = ratio * a
    clipped = jnp.clip(ratio, 1 - epsilon, 1 + epsilon_high) * a
    loss = -jnp.minimum(unclipped, clipped)
    low = (ratio < 1 - epsilon) & (a < 0)
    high = (ratio > 1 + epsilon_high) & (a > 0)
    return loss, low, high


def policy_loss(logp_new_BT, logp_old_BT, logp_ref_BT, adv_B, mask_BT, rl: RLConfig):
    """GRPO objective to minimise: aggregated clipped surrogate + beta * KL estimator (when in the loss)."""
    surr, low, high = clipped_surrogate(logp_new_BT, logp_old_BT, adv_B, rl.epsilon, rl.eps_high)
    per_token = surr
    if rl.beta > 0 and rl.kl_placement == "loss":
        per_token = per_token + rl.beta * kl_estimate(logp_new_BT, logp_ref_BT, rl.kl_estimator)
    m = mask_BT.astype(jnp.float32)
    n = jnp.maximum(m.sum(), 1.0)
    stats = {"clip/low_frac": jnp.sum(low * m) / n, "clip/high_frac": jnp.sum(high * m) / n}
    return aggregate(per_token, mask_BT, rl.loss_agg, rl.num_generations), stats


def shaped_rewards(rewards_B, logp_old_BT, logp_ref_BT, mask_BT, rl: RLConfig):
    """Rewards with the KL penalty placed in the reward (beta * per-sequence estimator sum), else unchanged."""
    if rl.beta > 0 and rl.kl_placement == "reward":
        k = kl_estimate(logp_old_BT, logp_ref_BT, rl.kl_estimator) * mask_BT
        return rewards_B - rl.beta * jax.lax.stop_gradient(k.sum(1))
    return rewards_B


@jax.tree_util.register_dataclass
@dataclass
class Rollout:
    """One group-sampled batch: prompt+completion tokens, completion mask, 0/1 rewards, the policy's and the
    reference's full log-softmax at the completion positions."""

    tokens_BL: jnp.ndarray
    comp_BC: jnp.ndarray
    mask_BC: jnp.ndarray
    reward_B: jnp.ndarray
    logp_old_BCV: jnp.ndarray
    logp_ref_BCV: jnp.ndarray


def rollout(st: StepStatics, params, data: StepData, idx_key, sample_key, with_ref: bool = True) -> Rollout:
    """Draw ``prompts_per_step`` prompts (``idx_key``: the data order), sample ``num_generations`` completions
    each (``sample_key``), verify them, and score them under the policy (and the reference)."""
    rl, pool = st.rl, data.pool
    G = rl.num_generations
    idx = jax.random.randint(idx_key, (rl.prompts_per_step,), 0, pool.prompts_NP.shape[0])
    prompts = constrain(jnp.repeat(pool.prompts_NP[idx], G, axis=0), st.sharding)
    answers = jnp.repeat(pool.answers_NA[idx], G, axis=0)
    comp, _, mask = sample(st.graphdef, params, prompts, sample_key, cfg=st.mcfg, completion_len=st.completion_len,
                           temperature=rl.temperature)
    tokens = constrain(jnp.concatenate([prompts, comp], axis=1), st.sharding)
    reward = verify_tokens(comp, answers)
    logp_old = completion_logp(st.graphdef, params, tokens, st.prompt_len)
    logp_ref = completion_logp(st.graphdef, data.ref_params, tokens, st.prompt_len) if with_ref else logp_old
    return Rollout(tokens, comp, mask, reward, logp_old, logp_ref)


def _take(logp_BCV, comp_BC):
    return jnp.take_along_axis(logp_BCV, comp_BC[..., None], axis=-1)[..., 0]


def rl_step(st: StepStatics, trainable, opt_state, data: StepData, keys, hyper, probe_lp_old) -> StepOut:
    """One GRPO-family step: sample G completions per prompt, verify, advantages, num_iterations updates.

    ``keys`` = (data-order key, sampling key) of this step; ``hyper`` (learning rate and optimizer constants) is traced: one compile serves them all."""
    rl = st.rl
    G = rl.num_generations
    params = materialize(st, trainable, data)
    ro = rollout(st, params, data, *keys)
    lp_old, lp_ref = _take(ro.logp_old_BCV, ro.comp_BC), _take(ro.logp_ref_BCV, ro.comp_BC)
    shaped = shaped_rewards(ro.reward_B, lp_old, lp_ref, ro.mask_BC, rl)
    adv = advantages(shaped.reshape(-1, G), rl.advantage_estimator).reshape(-1)

    def loss_fn(tr):
        lp_new = _take(completion_logp(st.graphdef, materialize(st, tr, data), ro.tokens_BL, st.prompt_len), ro.comp_BC)
        return policy_loss(lp_new, lp_old, lp_ref, adv, ro.mask_BC, rl)

    new, stats, change, grads_sum = trainable, {}, None, None
    for _ in range(rl.num_iterations):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(new)
        new, opt_state, step_change = apply_update(st.optim, st.mode, hyper, new, opt_state, grads, data.mask)
        change = step_change if change is None else jax.tree.map(jnp.add, change, step_change)
        grads_sum = grads if grads_sum is None else jax.tree.map(jnp.add, grads_sum, grads)

    p_correct = ro.reward_B.reshape(-1, G).mean(axis=1)
    lengths = ro.mask_BC.sum(axis=1)
    metrics = {
        "loss/policy": loss,
        "reward/mean": ro.reward_B.mean(),
        "reward/group_solved_frac": jnp.mean((p_correct > 0) & (p_correct < 1)),
        "len/mean": lengths.mean(),
        "entropy/token_mean": entropy_token_mean(ro.logp_old_BCV, ro.mask_BC),
        "kl/to_ref_exact": exact_kl_token_mean(ro.logp_old_BCV, ro.logp_ref_BCV, ro.mask_BC),
        "kl/to_ref_k1": masked_mean(kl_estimate(lp_old, lp_ref, "k1"), ro.mask_BC),
        "kl/to_ref_k2": masked_mean(kl_estimate(lp_old, lp_ref, "k2"), ro.mask_BC),
        "kl/to_ref_k3": masked_mean(kl_estimate(lp_old, lp_ref, "k3"), ro.mask_BC),
        "kl/tilted_bound_seq": _tilted_bound(p_correct, rl.beta),
        "kl/clip_bound_seq": lengths.mean() * jnp.maximum(-jnp.log1p(-rl.epsilon), jnp.log1p(rl.eps_high)),
        **stats,
    }
    return finish_step(st, data, params, new, opt_state, change, grads_sum, ro.logp_old_BCV, ro.tokens_BL, ro.mask_BC,
                       probe_lp_old, metrics)


def _tilted_bound(p_correct_P, beta: float):
    """Mean over prompts of KL(q_tilde || pi) for a 0/1 reward, from each group's pass rate (Prop 3.1 rhs).

    The tilt depends on y only through R(y), so the sequence-level KL equals this two-outcome KL.
    NaN when beta = 0 (no KL anchor: the clip-only bound applies instead).
    """
    if beta <= 0:
        return jnp.float32(jnp.nan)
    p = jnp.clip(p_correct_P, 0.0, 1.0)
    logp = jnp.stack([jnp.log1p(-p), jnp.log(p)], axis=-1)  # -inf where a class has no mass: allowed
    reward = jnp.array([0.0, 1.0], jnp.float32)
    return jnp.mean(jax.vmap(lambda lq: kl_tilted(lq, reward, beta))(logp))
