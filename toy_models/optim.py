"""The fine-tuning optimizer: AdamW or plain SGD with the learning rate as a traced argument.

``optax.adamw(lr)`` bakes ``lr`` into the compiled step, so every learning rate of a sweep would
compile its own step. Here the optimizer is split into a static core (``scale_by_adam`` and decoupled
weight decay for AdamW; weight decay alone for SGD) and the scaling by ``-lr`` done in the update
(``optax.scale(-lr)`` with a traced ``lr``), which is the same arithmetic as ``optax.adamw``
(``scale_by_learning_rate`` multiplies by ``-lr`` last). One compiled step then serves every learning rate and seed of a shape.

The update also applies an optional 0/1 mask (masked fine-tuning: a frozen coordinate receives an
update of exactly -0.0, after weight decay and the learning rate, so it keeps its bits) and the storage rule of the precision mode, and returns the
fp32 change it intended (before bf16 storage rounding), from which the regime numbers are measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from theory.precision import half_ulp_bf16
from toy_models.storage import after_update
from toy_models.transformer import weight_matrices

ADAM_NOISE_STEP = math.sqrt((1 - 0.9) / (1 + 0.9))  # RMS of Adam's m/sqrt(v) for zero-mean i.i.d. gradients (b1 0.9)


@dataclass(frozen=True)
class OptimSpec:
    """The static part of the optimizer: its kind and constants (b1, b2, eps, weight decay). The learning
    rate is traced (``hyper``), so one compiled step serves every learning rate. (Tracing the constants too
    would share even more compilations, but then XLA fuses the compiled loop and the lone step differently
    and they stop agreeing bit for bit; rarely varied constants are not worth that.)"""

    name: Literal["adamw", "sgd"] = "adamw"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def core(self) -> optax.GradientTransformation:
        """The optimizer without its ``-lr`` scaling: scale_by_adam + decoupled weight decay (AdamW), or
        weight decay alone (SGD: the update direction is the gradient itself)."""
        decay = optax.add_decayed_weights(self.weight_decay) if self.weight_decay > 0 else optax.identity()
        if self.name == "sgd":
            return decay
        return optax.chain(optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps), decay)


def median_abs_weight(flat: dict) -> float:
    """Median |w| over every entry of the weight matrices (``toy_models.transformer.weight_matrices``: attention,
    MLP and embedding tables; no norm scales or biases) of a flat parameter dict."""
    return float(np.median(np.abs(np.concatenate([np.ravel(w) for w in weight_matrices(flat).values()]))))


def lr_for_step_ratio(median_abs_w: float, step_ratio: float) -> float:
    """The learning rate whose Adam step is ``step_ratio`` half-ULPs of a weight of magnitude ``median_abs_w``
    (the rule of the ``rlvr`` profile, written before its runs: verify/profiles.py ``rlvr_lr``).

    Adam moves a coordinate by lr |m/sqrt(v)| per step; for RL gradients, mostly noise from one step to the next,
    |m/sqrt(v)| is about its zero-mean i.i.d. value sqrt((1 - b1) / (1 + b1)) = 0.229 (b1 = 0.9). So the per-step
    change in half-ULPs of bf16 is lr * 0.229 / half_ulp(median |w|); solved for ``step_ratio`` and rounded to two
    significant digits."""
    return float(f"{step_ratio * float(half_ulp_bf16(median_abs_w)) / ADAM_NOISE_STEP:.2g}")


def hyperparameters(lr: float) -> dict:
    """The traced optimizer numbers (the learning rate) as float32 scalars."""
    return {"lr": jnp.float32(lr)}


def transform(spec: OptimSpec, hyper, mask=None) -> optax.GradientTransformation:
    """The whole update rule ``-lr * core(g)``, restricted to the trainable coordinates of ``mask`` (a 0/1
    pytree like the parameters, or None) by ``toy_models.masks.masked_optimizer``: a frozen coordinate gets
    an update of exactly -0.0, after weight decay and the learning rate. Built inside the jitted step, so
    ``hyper`` and ``mask`` may be traced."""
    rule = optax.chain(spec.core(), optax.scale(-hyper["lr"]))
    if mask is None:
        return rule
    from toy_models.masks import masked_optimizer

    return masked_optimizer(rule, mask)


def init_opt_state(spec: OptimSpec, params):
    """Optimizer state for ``params`` (the same structure with or without a mask, for every value)."""
    return transform(spec, hyperparameters(1.0)).init(params)


def apply_update(spec: OptimSpec, mode: str, hyper, params, opt_state, grads, mask=None):
    """One optimizer step ``w <- store(w + transform(spec, hyper, mask)(g))``.

    Returns (stored params, new optimizer state, change) where ``change`` is the fp32 update the optimizer
    asked for, before the storage rule of ``mode`` rounds the result (``toy_models.storage``)."""
    change, opt_state = transform(spec, hyper, mask).update(grads, opt_state, params)
    change = jax.tree.map(lambda u: u.astype(jnp.float32), change)
    new = jax.tree.map(lambda p, u: p + u, params, change)
    return after_update(new, mode), opt_state, change
