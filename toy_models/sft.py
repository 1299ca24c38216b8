"""Supervised fine-tuning: cross-entropy on off-policy demonstrations (the worked-scratchpad format the
base never produces), with the same optimizer family, storage modes and measurements as the RL step."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from toy_models.metrics import completion_logp, entropy_token_mean, masked_mean
from toy_models.steps import Pool, Probe, change_metrics, constrain, probe_metrics, update


@partial(jax.jit, static_argnames=("graphdef", "opt", "mode", "prompt_len", "batch_size", "sharding"))
def sft_step(graphdef, opt, mode: str, prompt_len: int, batch_size: int, sharding,
             params, opt_state, pool: Pool, probe: Probe, key):
    """One SFT step: cross-entropy on a batch of off-policy demonstrations (completion tokens only)."""
    idx = jax.random.randint(key, (batch_size,), 0, pool.demos_NL.shape[0])
    tokens = constrain(pool.demos_NL[idx], sharding)
    comp = tokens[:, prompt_len:]
    mask = (comp != 0).astype(jnp.float32)

    def loss_fn(p):
        lp = completion_logp(graphdef, p, tokens, prompt_len)
        tok_lp = jnp.take_along_axis(lp, comp[..., None], axis=-1)[..., 0]
        return -masked_mean(tok_lp, mask)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    new, opt_state = update(opt, mode, params, opt_state, grads)
    logp_full = completion_logp(graphdef, params, tokens, prompt_len)
    metrics = {
        "loss/ce": loss,
        "entropy/token_mean": entropy_token_mean(logp_full, mask),
        **change_metrics(graphdef, params, new, grads, tokens, mask, prompt_len),
        **probe_metrics(graphdef, params, new, probe, prompt_len),
    }
    return new, opt_state, metrics
