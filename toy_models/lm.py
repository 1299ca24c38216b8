"""Cross-entropy on completion tokens: the loss shared by pretraining and SFT, and its jitted steps.

A sequence is (prompt region, completion region) in one array ``tokens_BL``; the logit at index t
predicts token t+1, and ``loss_mask_BL`` marks the tokens that are predicted (completion tokens up to
and including EOS). Steps are pure functions of (params, opt_state, data, key) so they jit once,
scan over many steps and vmap over seeds.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from toy_models.tasks import PAD
from toy_models.transformer import apply, start_index


def completion_loss_mask(tokens_BL, prompt_len: int):
    """1 on completion-region tokens up to and including the first EOS (PAD after it is 0)."""
    comp = tokens_BL[:, prompt_len:]
    mask = (comp != PAD).astype(jnp.float32)
    return jnp.concatenate([jnp.zeros_like(tokens_BL[:, :prompt_len], jnp.float32), mask], axis=1)


def token_logprobs(graphdef, params, tokens_BL, prompt_len: int):
    """log pi(token_t | tokens_<t) for t = 1..L-1, float32, shape (B, L-1); also the full log-softmax."""
    start_B = start_index(tokens_BL[:, :prompt_len])
    logits, _ = apply(graphdef, params, tokens_BL[:, :-1], start_B)
    logp_BTV = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    tgt = tokens_BL[:, 1:]
    return jnp.take_along_axis(logp_BTV, tgt[..., None], axis=-1)[..., 0], logp_BTV


def cross_entropy(graphdef, params, tokens_BL, loss_mask_BL, prompt_len: int):
    """Mean negative log-likelihood of the masked tokens (token mean over the batch)."""
    lp, _ = token_logprobs(graphdef, params, tokens_BL, prompt_len)
    m = loss_mask_BL[:, 1:]
    return -jnp.sum(lp * m) / jnp.maximum(jnp.sum(m), 1.0)


@partial(jax.jit, static_argnames=("graphdef", "optimizer", "prompt_len", "batch_size", "num_steps"))
def ce_steps(graphdef, optimizer, params, opt_state, corpus_tokens_NL, corpus_mask_NL, key, *,
             prompt_len: int, batch_size: int, num_steps: int):
    """``num_steps`` Adam steps of cross-entropy on batches drawn (with replacement) from a corpus.

    Returns (params, opt_state, losses[num_steps]). The batch of step i uses fold_in(key, i).
    """
    N = corpus_tokens_NL.shape[0]

    def one(carry, i):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0, N)
        toks, mask = corpus_tokens_NL[idx], corpus_mask_NL[idx]
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(graphdef, p, toks, mask, prompt_len))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), jnp.arange(num_steps))
    return params, opt_state, losses
