"""Jitted autoregressive sampling with temperature, batched over prompts x generations.

Returns completion tokens, per-token log-probs (float32, under the temperature-scaled policy)
and a mask that is 1 up to and including the first EOS. With ``use_cache`` the keys and values
of earlier positions are kept (cost linear in length); without it every step recomputes the
whole prefix (the reference the cached path is tested and benchmarked against).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from toy_models.tasks import EOS, PAD
from toy_models.transformer import apply, init_cache, start_index


def _draw(logits_BV, key, temperature):
    scaled = logits_BV / temperature
    scaled = scaled.at[:, PAD].set(-jnp.inf)  # PAD is layout, never a choice
    logp_BV = jax.nn.log_softmax(scaled, axis=-1)
    tok_B = jax.random.categorical(key, logp_BV, axis=-1).astype(jnp.int32)
    return tok_B, jnp.take_along_axis(logp_BV, tok_B[:, None], axis=1)[:, 0]


@partial(jax.jit, static_argnames=("graphdef", "cfg", "completion_len", "temperature", "use_cache"))
def sample(graphdef, params, prompt_BP, key, *, cfg, completion_len: int, temperature: float = 1.0, use_cache: bool = True):
    """Sample completions for left-padded prompts; returns (tokens_BC, logp_BC, mask_BC)."""
    B, P = prompt_BP.shape
    L = P + completion_len
    start_B = start_index(prompt_BP)
    keys = jax.random.split(key, completion_len)

    if use_cache:
        cache = init_cache(cfg, B, L)
        logits, cache = apply(graphdef, params, prompt_BP, start_B, offset=0, cache=cache)
        carry0 = (logits[:, -1], cache)

        def advance(state, tok_B, i):
            _, cache = state
            logits, cache = apply(graphdef, params, tok_B[:, None], start_B, offset=P + i, cache=cache)
            return (logits[:, -1], cache)
    else:
        buf = jnp.concatenate([prompt_BP, jnp.full((B, completion_len), PAD, jnp.int32)], axis=1)
        logits, _ = apply(graphdef, params, buf, start_B)
        carry0 = (logits[:, P - 1], buf)

        def advance(state, tok_B, i):
            _, buf = state
            buf = jax.lax.dynamic_update_slice(buf, tok_B[:, None], (0, P + i))
            logits, _ = apply(graphdef, params, buf, start_B)
            return (jax.lax.dynamic_index_in_dim(logits, P + i, axis=1, keepdims=False), buf)

    def step(carry, xs):
        state, done_B = carry
        key_i, i = xs
        tok_B, logp_B = _draw(state[0], key_i, temperature)
        live_B = ~done_B
        tok_B = jnp.where(live_B, tok_B, PAD)
        logp_B = jnp.where(live_B, logp_B, 0.0)
        done_B = done_B | (tok_B == EOS)
        return (advance(state, tok_B, i), done_B), (tok_B, logp_B, live_B)

    _, (toks, logps, live) = jax.lax.scan(step, (carry0, jnp.zeros(B, bool)), (keys, jnp.arange(completion_len)))
    return toks.T, logps.T, live.T.astype(jnp.float32)
