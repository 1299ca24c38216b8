"""Per-step measurements shared by the RL and SFT steps: exact KL on a probe set, entropy, norms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from theory.kl import fisher_quadratic_logits, kl_categorical
from toy_models.transformer import apply, matrix_name, param_path, start_index


def masked_mean(x_BT, mask_BT):
    """Mean of x over the positions where mask is 1."""
    m = mask_BT.astype(jnp.float32)
    return jnp.sum(x_BT * m) / jnp.maximum(jnp.sum(m), 1.0)


def exact_kl_token_mean(logp_p_BTV, logp_q_BTV, mask_BT):
    """Token mean over masked positions of the exact full-vocabulary KL(p || q)."""
    return masked_mean(kl_categorical(logp_p_BTV, logp_q_BTV), mask_BT)


def exact_kl_seq_mean(logp_p_BTV, logp_q_BTV, mask_BT):
    """Mean over sequences of the summed per-position exact KL(p || q) (chain rule along the given prefixes)."""
    return jnp.mean(jnp.sum(kl_categorical(logp_p_BTV, logp_q_BTV) * mask_BT, axis=1))


def entropy_token_mean(logp_BTV, mask_BT):
    """Token-mean entropy of the policy at the masked positions (nats)."""
    ent = -jnp.sum(jnp.exp(logp_BTV) * logp_BTV, axis=-1)
    return masked_mean(ent, mask_BT)


def completion_logp(graphdef, params, tokens_BL, prompt_len: int):
    """Full log-softmax at the positions that predict completion tokens: shape (B, C, V), float32."""
    start_B = start_index(tokens_BL[:, :prompt_len])
    logits, _ = apply(graphdef, params, tokens_BL[:, :-1], start_B)
    return jax.nn.log_softmax(logits[:, prompt_len - 1 :].astype(jnp.float32), axis=-1)


def fisher_quad_seq_mean(graphdef, params, delta, tokens_BL, mask_BC, prompt_len: int):
    """Mean over sequences of sum_t 1/2 dz_t^T (diag p_t - p_t p_t^T) dz_t, dz the logit change along ``delta``.

    The second-order (Fisher) prediction of the sequence KL of the step (Prop 3.2).
    """
    start_B = start_index(tokens_BL[:, :prompt_len])
    f = lambda p: apply(graphdef, p, tokens_BL[:, :-1], start_B)[0][:, prompt_len - 1 :].astype(jnp.float32)
    logits, dz = jax.jvp(f, (params,), (delta,))
    quad = fisher_quadratic_logits(jax.nn.log_softmax(logits, axis=-1), dz)
    return jnp.mean(jnp.sum(quad * mask_BC, axis=1))


def matrix_norms(tree, prefix: str) -> dict[str, jnp.ndarray]:
    """Frobenius norm of every weight matrix of a parameter-shaped pytree, keyed '<prefix>/<matrix name>'."""
    out = {}
    for path, v in nnx.to_flat_state(tree):
        name = matrix_name(param_path(path))
        arr = v[...] if hasattr(v, "get_value") or hasattr(v, "value") else v
        if name is not None and arr.ndim == 2:
            out[f"{prefix}/{name}"] = jnp.sqrt(jnp.sum(jnp.square(arr.astype(jnp.float32))))
    return out


def bf16_visible_share(params_old, params_new) -> jnp.ndarray:
    """Share of all parameters whose bf16 value (nearest-even cast of float32) differs after the step from before
    it, values compared (+0 and -0 equal): the per-step share a bf16 export would show (published RLVR: about 1 to
    2 % per optimizer step). On the fp32 master weights of fp32_master runs; on the stored values of bf16 runs."""
    cast = lambda x: x.astype(jnp.float32).astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731
    pairs = list(zip(jax.tree.leaves(params_old), jax.tree.leaves(params_new)))
    changed = sum(jnp.sum(cast(a) != cast(b)) for a, b in pairs)
    return changed.astype(jnp.float32) / sum(a.size for a, _ in pairs)


def global_norm(tree) -> jnp.ndarray:
    """Euclidean norm of all leaves of a pytree together."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))
