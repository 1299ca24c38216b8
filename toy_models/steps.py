"""What the RL step (toy_models.rl) and the SFT step (toy_models.sft) share: the device-resident problem
sets, the optimizer update under a storage mode, the per-step change and probe measurements, and the
held-out accuracy. Both steps are pure in (params, opt_state, key): they jit once per shape, vmap over
seeds (see benchmarks/) and shard their batch axis when given a sharding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import optax

from toy_models.metrics import (
    completion_logp,
    exact_kl_seq_mean,
    exact_kl_token_mean,
    fisher_quad_seq_mean,
    global_norm,
    matrix_norms,
)
from toy_models.reward import verify_tokens
from toy_models.sampling import sample
from toy_models.storage import after_update


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


def constrain(x, sharding):
    """Pin ``x`` to the batch sharding of a data-parallel run (identity on one device)."""
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def probe_metrics(graphdef, params_old, params_new, probe: Probe, prompt_len: int):
    """Exact token-mean KL(pi_t+1 || pi_t) and KL(pi_t+1 || base) on the fixed probe set."""
    lp_old = completion_logp(graphdef, params_old, probe.tokens_NL, prompt_len)
    lp_new = completion_logp(graphdef, params_new, probe.tokens_NL, prompt_len)
    return {
        "kl/step_exact": exact_kl_token_mean(lp_new, lp_old, probe.mask_NC),
        "kl/to_base_exact": exact_kl_token_mean(lp_new, probe.base_logp_NCV, probe.mask_NC),
    }


def update(opt, mode, params, opt_state, grads):
    """One optimizer update followed by the storage rule of ``mode`` (bf16 rounding for 'bf16')."""
    updates, opt_state = opt.update(grads, opt_state, params)
    return after_update(optax.apply_updates(params, updates), mode), opt_state


def change_metrics(graphdef, params_old, params_new, grads, tokens_BL, mask_BC, prompt_len):
    """What one step changed: exact sequence KL of the step on its batch, its Fisher form 1/2 D^T F D,
    global and per-matrix gradient and update norms."""
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


@partial(jax.jit, static_argnames=("graphdef", "mcfg", "completion_len", "n_tasks"))
def heldout_accuracy(graphdef, mcfg, completion_len: int, n_tasks: int, params, prompts_NP, answers_NA, task_N, key):
    """Per-task held-out pass rate at temperature 1, one sample per problem (fixed key: common random numbers)."""
    comp, _, _ = sample(graphdef, params, prompts_NP, key, cfg=mcfg, completion_len=completion_len)
    ok = verify_tokens(comp, answers_NA)
    onehot = jax.nn.one_hot(task_N, n_tasks)
    return (ok[:, None] * onehot).sum(0) / jnp.maximum(onehot.sum(0), 1.0)
