"""On-device verifiable reward: the JAX twin of ``Task.verify``, so an RL step stays one jitted function.

A completion earns 1 when, after an optional leading '(...)' scratchpad, its tokens up to and
including EOS equal the answer tokens up to and including EOS. Tested against the Python verifier.
"""

from __future__ import annotations

import jax.numpy as jnp

from toy_models.tasks import CLOSE, EOS, OPEN, PAD


def verify_tokens(completion_BC, answer_BA) -> jnp.ndarray:
    """1.0 where the completion verifies against the answer tokens (answer, EOS, PAD...), else 0.0."""
    B, C = completion_BC.shape
    A = answer_BA.shape[1]
    has_pad = completion_BC[:, 0] == OPEN
    first_close = jnp.argmax(completion_BC == CLOSE, axis=1)
    closed = jnp.any(completion_BC == CLOSE, axis=1)
    # an EOS inside the scratchpad ends the completion before it closes: not a valid answer
    eos_pos = jnp.where(jnp.any(completion_BC == EOS, axis=1), jnp.argmax(completion_BC == EOS, axis=1), C)
    shift = jnp.where(has_pad, first_close + 1, 0)
    valid = jnp.where(has_pad, closed & (first_close < eos_pos), True)
    ans_len = jnp.argmax(answer_BA == EOS, axis=1) + 1  # answer tokens plus EOS
    pos_BA = shift[:, None] + jnp.arange(A)[None, :]
    got_BA = jnp.where(pos_BA < C, jnp.take_along_axis(completion_BC, jnp.clip(pos_BA, 0, C - 1), axis=1), PAD)
    need_BA = jnp.arange(A)[None, :] < ans_len[:, None]
    match = jnp.all(jnp.where(need_BA, got_BA == answer_BA, True), axis=1)
    fits = shift + ans_len <= C
    return (valid & match & fits).astype(jnp.float32)
