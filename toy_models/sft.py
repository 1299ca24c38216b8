"""Supervised fine-tuning, two data sources, one objective (token-mean cross-entropy on completions):

- ``sft_step``: off-policy demonstrations (the worked-scratchpad format the base never produces);
- ``sft_onpolicy_step``: the model's own correct samples (rejection sampling: G samples per prompt,
  keep the verified ones), which sits between RL and SFT on demonstrations: on-policy data like RL,
  the cross-entropy objective like SFT. Gate I says on-policy data is what keeps a step small; this
  method separates the data from the objective.

Both use the optimizer, storage modes and measurements of the RL step (toy_models.steps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from toy_models.metrics import completion_logp, entropy_token_mean, masked_mean
from toy_models.optim import apply_update
from toy_models.rl import rollout
from toy_models.steps import StepData, StepOut, StepStatics, constrain, finish_step, materialize


def _ce_update(st: StepStatics, trainable, opt_state, data: StepData, hyper, tokens_BL, weight_BC):
    """Cross-entropy update on the completion tokens of ``tokens_BL`` weighted by ``weight_BC`` (0/1)."""
    comp = tokens_BL[:, st.prompt_len:]

    def loss_fn(tr):
        lp = completion_logp(st.graphdef, materialize(st, tr, data), tokens_BL, st.prompt_len)
        tok_lp = jnp.take_along_axis(lp, comp[..., None], axis=-1)[..., 0]
        return -masked_mean(tok_lp, weight_BC), lp

    (loss, lp_old), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    new, opt_state, change = apply_update(st.optim, st.mode, hyper, trainable, opt_state, grads, data.mask)
    return loss, jax.lax.stop_gradient(lp_old), grads, new, opt_state, change


def sft_step(st: StepStatics, trainable, opt_state, data: StepData, keys, hyper, probe_lp_old) -> StepOut:
    """One SFT step: cross-entropy on a batch of off-policy demonstrations (completion tokens only)."""
    idx = jax.random.randint(keys[0], (st.batch_size,), 0, data.pool.demos_NL.shape[0])
    tokens = constrain(data.pool.demos_NL[idx], st.sharding)
    mask = (tokens[:, st.prompt_len:] != 0).astype(jnp.float32)
    params = materialize(st, trainable, data)
    loss, lp_old, grads, new, opt_state, change = _ce_update(st, trainable, opt_state, data, hyper, tokens, mask)
    metrics = {"loss/ce": loss, "entropy/token_mean": entropy_token_mean(lp_old, mask)}
    return finish_step(st, data, params, new, opt_state, change, grads, lp_old, tokens, mask, probe_lp_old, metrics)


def sft_onpolicy_step(st: StepStatics, trainable, opt_state, data: StepData, keys, hyper, probe_lp_old) -> StepOut:
    """One rejection-sampling step: sample G completions per prompt as RL does, keep the verified ones, and
    take a cross-entropy step on them (no update direction from failures; a batch with no success gives a
    zero gradient, and Adam then moves by its momentum only)."""
    params = materialize(st, trainable, data)
    ro = rollout(st, params, data, *keys, with_ref=False)
    weight = ro.mask_BC * ro.reward_B[:, None]
    loss, _, grads, new, opt_state, change = _ce_update(st, trainable, opt_state, data, hyper, ro.tokens_BL, weight)
    metrics = {"loss/ce": loss, "reward/mean": ro.reward_B.mean(),
               "entropy/token_mean": entropy_token_mean(ro.logp_old_BCV, ro.mask_BC)}
    return finish_step(st, data, params, new, opt_state, change, grads, ro.logp_old_BCV, ro.tokens_BL, ro.mask_BC,
                       probe_lp_old, metrics)

