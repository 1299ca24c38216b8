"""What the RL steps (toy_models.rl), the SFT steps (toy_models.sft) and the preference steps
(toy_models.preference) share: the device-resident data
of a run, the static description of its step, the per-step change and probe measurements, and the
held-out accuracy.

A step is a pure function ``step(statics, trainable, opt_state, data, keys, hyper, probe_logp)`` ->
``StepOut``: it jits once per ``StepStatics`` (shapes and options, never the learning rate or the seed: the
learning rate travels in the traced ``hyper`` dict), runs inside ``lax.scan`` (toy_models.segment), vmaps over seeds (benchmarks/) and shards its
batch axis when given a sharding. ``trainable`` is the parameter state itself, or the adapter
factors of an adapter run (``materialize`` merges them into full parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from toy_models.metrics import (
    bf16_visible_share,
    completion_logp,
    exact_kl_seq_mean,
    exact_kl_token_mean,
    fisher_quad_seq_mean,
    global_norm,
    matrix_norms,
)
from toy_models.optim import OptimSpec
from toy_models.reward import verify_tokens
from toy_models.sampling import sample


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


@jax.tree_util.register_dataclass
@dataclass
class StepData:
    """Everything a step reads but never changes: problems, probe, the reference (base) parameters, an
    optional 0/1 update mask and, for adapter runs, the frozen parameters the adapter merges into (and the
    principal frames of the off-principal adapter); for DPO and SimPO runs, the preference pairs
    (``toy_models.preference.PairSet``)."""

    pool: Pool
    probe: Probe
    ref_params: Any
    mask: Any = None
    frozen: Any = None
    frames: Any = None
    pairs: Any = None


@dataclass(frozen=True)
class StepStatics:
    """The static (compile-time) description of a fine-tuning step; hashable, so it keys the jit cache."""

    graphdef: Any
    mcfg: Any
    method: str  # "rl" | "sft" | "sft_onpolicy" | "dpo" | "simpo"
    rl: Any  # toy_models.rl.RLConfig
    optim: OptimSpec
    mode: str  # storage precision
    prompt_len: int
    completion_len: int
    batch_size: int
    sharding: Any = None
    adapter: Any = None  # toy_models.adapters.AdapterConfig of an adapter run, else None
    pref: Any = None  # toy_models.preference.PreferenceConfig of a DPO or SimPO run, else None


@jax.tree_util.register_dataclass
@dataclass
class StepOut:
    """What a step returns: the stored trainable state, the optimizer state, the intended fp32 change of
    the full parameters, whether any gradient entry was non-zero, the probe log-probs after the step,
    and the step's metrics (scalars)."""

    trainable: Any
    opt_state: Any
    change: Any
    grad_nonzero: Any
    probe_logp: jnp.ndarray
    metrics: dict


def materialize(st: StepStatics, trainable, data: StepData):
    """Full parameters from the trainable state: itself, or the adapter merged into the frozen weights."""
    if st.adapter is None:
        return trainable
    from toy_models.adapters import merge

    return merge(data.frozen, trainable, st.adapter, data.frames)


def constrain(x, sharding):
    """Pin ``x`` to the batch sharding of a data-parallel run (identity on one device)."""
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def probe_logp(st: StepStatics, params, probe: Probe):
    """The policy's full log-softmax on the probe completions (carried from step to step)."""
    return completion_logp(st.graphdef, params, probe.tokens_NL, st.prompt_len)


def probe_metrics(lp_old_NCV, lp_new_NCV, probe: Probe):
    """Exact token-mean KL(pi_t+1 || pi_t) and KL(pi_t+1 || base) on the fixed probe set."""
    return {
        "kl/step_exact": exact_kl_token_mean(lp_new_NCV, lp_old_NCV, probe.mask_NC),
        "kl/to_base_exact": exact_kl_token_mean(lp_new_NCV, probe.base_logp_NCV, probe.mask_NC),
    }


def change_metrics(st: StepStatics, params_old, params_new, lp_old_BCV, grads, tokens_BL, mask_BC):
    """What one step changed: exact sequence KL of the step on its batch, its Fisher form 1/2 D^T F D,
    global gradient and update norms, the share of parameters whose bf16 value changed, and per-matrix update (and, for full fine-tuning, gradient) norms."""
    delta = jax.tree.map(lambda a, b: a - b, params_new, params_old)
    lp_new = completion_logp(st.graphdef, params_new, tokens_BL, st.prompt_len)
    out = {
        "kl/step_exact_seq": exact_kl_seq_mean(lp_new, lp_old_BCV, mask_BC),
        "kl/fisher_quad_seq": fisher_quad_seq_mean(st.graphdef, params_old, delta, tokens_BL, mask_BC, st.prompt_len),
        "norm/grad": global_norm(grads),
        "norm/update": global_norm(delta),
        "precision/bf16_visible_share": bf16_visible_share(params_old, params_new),
        **matrix_norms(delta, "update_norm"),
    }
    if st.adapter is None:
        out.update(matrix_norms(grads, "grad_norm"))
    return out


def any_nonzero(tree):
    """Per-entry ``x != 0`` of a parameter-shaped pytree (which coordinates received a gradient)."""
    return jax.tree.map(lambda x: x != 0, tree)


def finish_step(st: StepStatics, data: StepData, params_old, trainable_new, opt_state, change, grads, lp_old_BCV,
                tokens_BL, mask_BC, probe_lp_old, metrics: dict) -> StepOut:
    """Assemble a step's output: measurements of the change on the batch and on the probe."""
    params_new = materialize(st, trainable_new, data)
    if st.adapter is not None:  # the change of the full (merged) parameters
        change = jax.tree.map(lambda a, b: (a - b).astype(jnp.float32), params_new, params_old)
    probe_lp_new = probe_logp(st, params_new, data.probe)
    metrics = {**metrics, **change_metrics(st, params_old, params_new, lp_old_BCV, grads, tokens_BL, mask_BC),
               **probe_metrics(probe_lp_old, probe_lp_new, data.probe)}
    grad_nonzero = any_nonzero(grads) if st.adapter is None else any_nonzero(change)
    return StepOut(trainable_new, opt_state, change, grad_nonzero, probe_lp_new, metrics)


@partial(jax.jit, static_argnames=("graphdef", "mcfg", "completion_len", "n_tasks"))
def heldout_accuracy(graphdef, mcfg, completion_len: int, n_tasks: int, params, prompts_NP, answers_NA, task_N, key):
    """Per-task held-out pass rate at temperature 1, one sample per problem (fixed key: common random numbers)."""
    comp, _, _ = sample(graphdef, params, prompts_NP, key, cfg=mcfg, completion_len=completion_len)
    ok = verify_tokens(comp, answers_NA)
    onehot = jax.nn.one_hot(task_N, n_tasks)
    return (ok[:, None] * onehot).sum(0) / jnp.maximum(onehot.sum(0), 1.0)
