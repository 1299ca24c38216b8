"""Compiled training segments: the steps between two evaluations run as one jitted loop.

The loop (a ``lax.fori_loop`` with a traced trip count, so segments of any length share one
compilation) body is one fine-tuning step (``toy_models.rl.rl_step``, ``toy_models.sft.sft_step``,
``sft_onpolicy_step`` or ``toy_models.preference.preference_step``) plus what the loop around it needs:

- a NaN/Inf guard: a step whose parameters or loss are not finite is not applied, and neither is any
  later step of the segment (the carry keeps the last good state; the host learns which step failed);
- the regime accumulators: per parameter, the sum and the sum of absolute values of the intended fp32
  changes, and whether a non-zero gradient was ever seen (``theory.precision`` turns them into step,
  drift and sign-consistency ratios);
- the probe log-probs of the current policy, carried from one step to the next so the exact step KL on
  the probe costs one forward pass per step; the carry starts afresh at every segment, so a resumed run
  and an uninterrupted one compute the same numbers.

Randomness: step ``t`` draws its batch from ``fold_in(data_key, t)`` and samples with
``fold_in(run_key, t)``; the learning rate is traced, so one compiled segment serves a whole sweep.
``train_step`` is the same body jitted alone: the step loop the compiled loop is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from toy_models.preference import preference_step
from toy_models.rl import rl_step
from toy_models.sft import sft_onpolicy_step, sft_step
from toy_models.steps import StepData, StepStatics, materialize, probe_logp

STEP_FUNCTIONS = {"rl": rl_step, "sft": sft_step, "sft_onpolicy": sft_onpolicy_step, "dpo": preference_step,
                  "simpo": preference_step}
LOSS_KEY = {"rl": "loss/policy", "sft": "loss/ce", "sft_onpolicy": "loss/ce", "dpo": "loss/preference",
            "simpo": "loss/preference"}


@jax.tree_util.register_dataclass
@dataclass
class TrainState:
    """The carry of a run: trainable state, optimizer state, regime accumulators and the health flag."""

    trainable: Any
    opt_state: Any
    change_sum: Any  # sum over steps of the intended fp32 change of every parameter
    abs_change_sum: Any  # sum over steps of its absolute value
    grad_seen: Any  # bool: the parameter's gradient was non-zero at some step
    ok: jnp.ndarray  # bool scalar: every step so far was finite


def init_state(trainable, opt_state, params) -> TrainState:
    """A fresh carry: zero accumulators shaped like the full parameters ``params``. Every leaf is a buffer of
    its own (``train_segment`` donates the carry), so ``trainable`` is copied."""
    zeros = lambda dtype: jax.tree.map(lambda x: jnp.zeros(x.shape, dtype), params)  # noqa: E731
    return TrainState(jax.tree.map(jnp.copy, trainable), jax.tree.map(jnp.copy, opt_state), zeros(jnp.float32),
                      zeros(jnp.float32), zeros(bool), jnp.array(True))


def _all_finite(tree) -> jnp.ndarray:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _body(st: StepStatics, data: StepData, hyper, run_key, data_key, carry, step):
    state, probe_lp = carry
    keys = (jax.random.fold_in(data_key, step), jax.random.fold_in(run_key, step))
    out = STEP_FUNCTIONS[st.method](st, state.trainable, state.opt_state, data, keys, hyper, probe_lp)
    finite = _all_finite(out.trainable) & jnp.isfinite(out.metrics[LOSS_KEY[st.method]])
    take = state.ok & finite
    pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(take, a, b), new, old)  # noqa: E731
    change = jax.tree.map(lambda c: jnp.where(take, c, 0.0), out.change)
    new_state = TrainState(
        pick(out.trainable, state.trainable), pick(out.opt_state, state.opt_state),
        jax.tree.map(jnp.add, state.change_sum, change),
        jax.tree.map(lambda a, c: a + jnp.abs(c), state.abs_change_sum, change),
        jax.tree.map(lambda g, n: g | (n & take), state.grad_seen, out.grad_nonzero),
        take,
    )
    return (new_state, pick(out.probe_logp, probe_lp)), (out.metrics, finite)


@partial(jax.jit, static_argnames=("st", "length"), donate_argnames=("state",))
def train_segment(st: StepStatics, state: TrainState, data: StepData, hyper, run_key, data_key, start, count, length: int):
    """Run steps ``start .. start + count - 1`` (global 0-based indices) in one compiled loop.

    ``count`` is traced and at most the static ``length`` (the buffer size of the per-step metrics), so
    one compilation serves segments of every length. Returns (state, metrics[length], finite[length]);
    entries at and after ``count`` are padding."""
    probe_lp = probe_logp(st, materialize(st, state.trainable, data), data.probe)
    body = partial(_body, st, data, hyper, run_key, data_key)
    shapes = jax.eval_shape(body, (state, probe_lp), start)[1][0]
    buffers = jax.tree.map(lambda s: jnp.zeros((length,) + s.shape, s.dtype), shapes)

    def one(i, carry):
        inner, buf, fin = carry
        inner, (m, ok) = body(inner, start + i)
        return inner, jax.tree.map(lambda b, x: b.at[i].set(x), buf, m), fin.at[i].set(ok)

    (state, _), metrics, finite = jax.lax.fori_loop(0, count, one, ((state, probe_lp), buffers, jnp.ones(length, bool)))
    return state, metrics, finite


@partial(jax.jit, static_argnames=("st",))
def train_step(st: StepStatics, state: TrainState, probe_lp, data: StepData, hyper, run_key, data_key, step):
    """One step of the same body, jitted alone (the reference loop); returns (state, probe_lp, metrics, finite)."""
    (state, probe_lp), (metrics, finite) = _body(st, data, hyper, run_key, data_key, (state, probe_lp), step)
    return state, probe_lp, metrics, finite
