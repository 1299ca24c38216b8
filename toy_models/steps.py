"""The jitted fine-tuning steps: one on-policy RL step and one SFT step, pure in (params, opt_state, key).

Both return (params, opt_state, metrics) where metrics is a dict of scalars; they jit once per shape,
vmap over seeds (see benchmarks/) and shard their batch axis when given a sharding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from theory.kl import kl_estimate, kl_tilted
from toy_models.metrics import (
    completion_logp,
    entropy_token_mean,
    exact_kl_seq_mean,
    exact_kl_token_mean,
    fisher_quad_seq_mean,
    global_norm,
    masked_mean,
    matrix_norms,
)
from toy_models.reward import verify_tokens
from toy_models.rl import RLConfig, advantages, policy_loss, shaped_rewards
from toy_models.sampling import sample
from toy_models.storage import after_update
from toy_models.transformer import apply, start_index


@jax.tree_util.register_dataclass
@dataclass
class Pool:
    """Training problems on device: left-padded prompts, answer tokens, task ids, SFT demonstrations."""

    prompts_NP: jnp.ndarray
    answers_NA: jnp.ndarray
    task_N: jnp.ndarray
    demos_NL: jnp.ndarray


@jax.tree_util.register_dataclass
@dataclass
class Probe:
    """A fixed probe set (held-out prompts with base-sampled completions) and the base's log-probs on it."""

    tokens_NL: jnp.ndarray
    mask_NC: jnp.ndarray
    base_logp_NCV: jnp.ndarray


def _constrain(x, sharding):
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def _probe_metrics(graphdef, params_old, params_new, probe: Probe, prompt_len: int):
    lp_old = completion_logp(graphdef, params_old, probe.tokens_NL, prompt_len)
    lp_new = completion_logp(graphdef, params_new, probe.tokens_NL, prompt_len)
    return {
        "kl/step_exact": exact_kl_token_mean(lp_new, lp_old, probe.mask_NC),
        "kl/to_base_exact": exact_kl_token_mean(lp_new, probe.base_logp_NCV, probe.mask_NC),
    }


def _update(opt, mode, params, opt_state, grads):
    updates, opt_state = opt.update(grads, opt_state, params)
    return after_update(optax.apply_updates(params, updates), mode), opt_state


def _change_metrics(graphdef, params_old, params_new, grads, tokens_BL, mask_BC, prompt_len):
    delta = jax.tree.map(lambda a, b: a - b, params_new, params_old)
    lp_old = completion_logp(graphdef, params_old, tokens_BL, prompt_len)
    lp_new = completion_logp(graphdef, params_new, tokens_BL, prompt_len)
    return {
        "kl/step_exact_seq": exact_kl_seq_mean(lp_new, lp_old, mask_BC),
        "kl/fisher_quad_seq": fisher_quad_seq_mean(graphdef, params_old, delta, tokens_BL, mask_BC, prompt_len),
        "norm/grad": global_norm(grads),
        "norm/update": global_norm(delta),
        **matrix_norms(grads, "grad_norm"),
        **matrix_norms(delta, "update_norm"),
    }


@partial(jax.jit, static_argnames=("graphdef", "mcfg", "rl", "opt", "mode", "prompt_len", "completion_len", "sharding"))
def rl_step(graphdef, mcfg, rl: RLConfig, opt, mode: str, prompt_len: int, completion_len: int, sharding,
            params, opt_state, ref_params, pool: Pool, probe: Probe, key):
    """One GRPO-family step: sample G completions per prompt, verify, advantages, num_iterations updates."""
    G = rl.num_generations
    k_idx, k_sample = jax.random.split(key)
    idx = jax.random.randint(k_idx, (rl.prompts_per_step,), 0, pool.prompts_NP.shape[0])
    prompts = _constrain(jnp.repeat(pool.prompts_NP[idx], G, axis=0), sharding)
    answers = jnp.repeat(pool.answers_NA[idx], G, axis=0)
    comp, _, mask = sample(graphdef, params, prompts, k_sample, cfg=mcfg, completion_len=completion_len,
                           temperature=rl.temperature)
    tokens = _constrain(jnp.concatenate([prompts, comp], axis=1), sharding)
    reward = verify_tokens(comp, answers)
    logp_old_full = completion_logp(graphdef, params, tokens, prompt_len)
    logp_ref_full = completion_logp(graphdef, ref_params, tokens, prompt_len)
    take = lambda lp: jnp.take_along_axis(lp, comp[..., None], axis=-1)[..., 0]
    lp_old, lp_ref = take(logp_old_full), take(logp_ref_full)
    adv = advantages(shaped_rewards(reward, lp_old, lp_ref, mask, rl).reshape(-1, G), rl.advantage_estimator).reshape(-1)

    def loss_fn(p):
        lp_new = take(completion_logp(graphdef, p, tokens, prompt_len))
        return policy_loss(lp_new, lp_old, lp_ref, adv, mask, rl)

    params_old, new, stats = params, params, {}
    for _ in range(rl.num_iterations):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(new)
        new, opt_state = _update(opt, mode, new, opt_state, grads)

    p_correct = reward.reshape(-1, G).mean(axis=1)
    lengths = mask.sum(axis=1)
    metrics = {
        "loss/policy": loss,
        "reward/mean": reward.mean(),
        "reward/group_solved_frac": jnp.mean((p_correct > 0) & (p_correct < 1)),
        "len/mean": lengths.mean(),
        "entropy/token_mean": entropy_token_mean(logp_old_full, mask),
        "kl/to_ref_exact": exact_kl_token_mean(logp_old_full, logp_ref_full, mask),
        "kl/to_ref_k1": masked_mean(kl_estimate(lp_old, lp_ref, "k1"), mask),
        "kl/to_ref_k2": masked_mean(kl_estimate(lp_old, lp_ref, "k2"), mask),
        "kl/to_ref_k3": masked_mean(kl_estimate(lp_old, lp_ref, "k3"), mask),
        "kl/tilted_bound_seq": _tilted_bound(p_correct, rl.beta),
        "kl/clip_bound_seq": lengths.mean() * jnp.maximum(-jnp.log1p(-rl.epsilon), jnp.log1p(rl.eps_high)),
        **stats,
        **_change_metrics(graphdef, params_old, new, grads, tokens, mask, prompt_len),
        **_probe_metrics(graphdef, params_old, new, probe, prompt_len),
    }
    return new, opt_state, metrics


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


@partial(jax.jit, static_argnames=("graphdef", "opt", "mode", "prompt_len", "batch_size", "sharding"))
def sft_step(graphdef, opt, mode: str, prompt_len: int, batch_size: int, sharding,
             params, opt_state, pool: Pool, probe: Probe, key):
    """One SFT step: cross-entropy on a batch of off-policy demonstrations (completion tokens only)."""
    idx = jax.random.randint(key, (batch_size,), 0, pool.demos_NL.shape[0])
    tokens = _constrain(pool.demos_NL[idx], sharding)
    comp = tokens[:, prompt_len:]
    mask = (comp != 0).astype(jnp.float32)

    def loss_fn(p):
        lp = completion_logp(graphdef, p, tokens, prompt_len)
        tok_lp = jnp.take_along_axis(lp, comp[..., None], axis=-1)[..., 0]
        return -masked_mean(tok_lp, mask)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    new, opt_state = _update(opt, mode, params, opt_state, grads)
    logp_full = completion_logp(graphdef, params, tokens, prompt_len)
    metrics = {
        "loss/ce": loss,
        "entropy/token_mean": entropy_token_mean(logp_full, mask),
        **_change_metrics(graphdef, params, new, grads, tokens, mask, prompt_len),
        **_probe_metrics(graphdef, params, new, probe, prompt_len),
    }
    return new, opt_state, metrics


@partial(jax.jit, static_argnames=("graphdef", "mcfg", "completion_len", "n_tasks"))
def heldout_accuracy(graphdef, mcfg, completion_len: int, n_tasks: int, params, prompts_NP, answers_NA, task_N, key):
    """Per-task held-out pass rate at temperature 1, one sample per problem (fixed key: common random numbers)."""
    comp, _, _ = sample(graphdef, params, prompts_NP, key, cfg=mcfg, completion_len=completion_len)
    ok = verify_tokens(comp, answers_NA)
    onehot = jax.nn.one_hot(task_N, n_tasks)
    return (ok[:, None] * onehot).sum(0) / jnp.maximum(onehot.sum(0), 1.0)
