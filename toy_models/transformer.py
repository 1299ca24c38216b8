"""Decoder-only transformer in Flax NNX: pre-norm, causal multi-head attention, GELU MLP.

Sequences use the static layout of ``toy_models.tasks``: left-padded prompt, then completion.
``start_B`` is the index of each row's first real token (its BOS); keys before it are masked and
positions count from it. Logits are float32 whatever the weights hold.

The KV cache is explicit: ``init_cache`` makes zero arrays, ``__call__(..., cache=, offset=)`` writes
the new keys/values at ``offset`` and attends over everything written so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toy_models.config import check
from toy_models.tasks import VOCAB_SIZE

MASK_VALUE = -1e9


MAX_WIDTH = 16_384  # d_model, d_ff and vocab_size
MAX_LAYERS = 256
MAX_LEN = 8_192


@dataclass(frozen=True)
class ModelConfig:
    """The transformer's shape. Bounds: ``vocab_size`` 4 to 16,384, ``d_model`` and ``d_ff`` 1 to 16,384,
    ``n_layers`` 1 to 256, ``n_heads`` dividing d_model, ``max_len`` 2 to 8,192."""

    vocab_size: int = VOCAB_SIZE
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 48
    positions: Literal["learned", "rope"] = "learned"

    def __post_init__(self):
        check(4 <= self.vocab_size <= MAX_WIDTH, "model.vocab_size", f"must lie in 4..{MAX_WIDTH}, got {self.vocab_size}")
        check(1 <= self.d_model <= MAX_WIDTH, "model.d_model", f"must lie in 1..{MAX_WIDTH}, got {self.d_model}")
        check(1 <= self.n_layers <= MAX_LAYERS, "model.n_layers", f"must lie in 1..{MAX_LAYERS}, got {self.n_layers}")
        check(self.n_heads >= 1 and self.d_model % self.n_heads == 0, "model.n_heads",
              f"must divide model.d_model={self.d_model}, got {self.n_heads}")
        check(self.positions == "learned" or (self.d_model // self.n_heads) % 2 == 0, "model.positions",
              "rope needs an even head dimension")
        check(1 <= self.d_ff <= MAX_WIDTH, "model.d_ff", f"must lie in 1..{MAX_WIDTH}, got {self.d_ff}")
        check(2 <= self.max_len <= MAX_LEN, "model.max_len", f"must lie in 2..{MAX_LEN}, got {self.max_len}")
        check(self.positions in ("learned", "rope"), "model.positions", f"must be 'learned' or 'rope', got {self.positions!r}")


def _rope(x_BTHD, pos_BT):
    """Rotary position embedding on the last axis (pairs (2i, 2i+1) rotated by pos * 10000^(-2i/D))."""
    d = x_BTHD.shape[-1]
    freqs = 10000.0 ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    ang = pos_BT[..., None, None].astype(jnp.float32) * freqs  # B,T,1,D/2
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    x1, x2 = x_BTHD[..., 0::2], x_BTHD[..., 1::2]
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.reshape(x_BTHD.shape)


class Attention(nnx.Module):
    """Causal multi-head self-attention (q, k, v, o without bias); scores and softmax in float32."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.cfg = cfg
        self.q = nnx.Linear(d, d, use_bias=False, rngs=rngs)
        self.k = nnx.Linear(d, d, use_bias=False, rngs=rngs)
        self.v = nnx.Linear(d, d, use_bias=False, rngs=rngs)
        self.o = nnx.Linear(d, d, use_bias=False, rngs=rngs)

    def __call__(self, x_BTD, pos_BT, key_ok_BS, offset, cache):
        B, T, D = x_BTD.shape
        H = self.cfg.n_heads
        split = lambda y: y.reshape(B, T, H, D // H)
        q, k, v = split(self.q(x_BTD)), split(self.k(x_BTD)), split(self.v(x_BTD))
        if self.cfg.positions == "rope":
            q, k = _rope(q, pos_BT), _rope(k, pos_BT)
        if cache is not None:
            k_all = jax.lax.dynamic_update_slice(cache[0], k, (0, offset, 0, 0))
            v_all = jax.lax.dynamic_update_slice(cache[1], v, (0, offset, 0, 0))
            cache = (k_all, v_all)
        else:
            k_all, v_all = k, v
        S = k_all.shape[1]
        q_idx = offset + jnp.arange(T)
        causal_TS = jnp.arange(S)[None, :] <= q_idx[:, None]
        own_TS = jnp.arange(S)[None, :] == q_idx[:, None]  # a PAD query sees only itself, so no row is empty
        allowed_BTS = causal_TS[None] & (key_ok_BS[:, None, :] | own_TS[None])
        scores = jnp.einsum("bthd,bshd->bhts", q, k_all).astype(jnp.float32) / jnp.sqrt(D // H)
        scores = jnp.where(allowed_BTS[:, None], scores, MASK_VALUE)
        probs = jax.nn.softmax(scores, axis=-1)
        out = jnp.einsum("bhts,bshd->bthd", probs, v_all).reshape(B, T, D)
        return self.o(out), cache


class Block(nnx.Module):
    """Pre-norm residual block: x + attn(ln1(x)), then x + fc_out(gelu(fc_in(ln2(x))))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.ln2 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.fc_in = nnx.Linear(cfg.d_model, cfg.d_ff, use_bias=True, rngs=rngs)
        self.fc_out = nnx.Linear(cfg.d_ff, cfg.d_model, use_bias=True, rngs=rngs)

    def __call__(self, x, pos, key_ok, offset, cache):
        a, cache = self.attn(self.ln1(x), pos, key_ok, offset, cache)
        x = x + a
        x = x + self.fc_out(jax.nn.gelu(self.fc_in(self.ln2(x))))
        return x, cache


class Transformer(nnx.Module):
    """``Transformer(cfg, rngs=nnx.Rngs(seed))``; call with tokens_BT and start_B, get float32 logits_BTV."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, rngs=rngs)
        if cfg.positions == "learned":
            self.pos_embed = nnx.Embed(cfg.max_len, cfg.d_model, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.ln_f = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.unembed = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, rngs=rngs)

    def __call__(self, tokens_BT, start_B, *, offset=0, cache=None, key_ok_BS=None):
        """Logits for ``tokens_BT`` sitting at indices offset..offset+T-1; returns (logits_BTV, cache)."""
        B, T = tokens_BT.shape
        idx_T = offset + jnp.arange(T)
        pos_BT = jnp.clip(idx_T[None, :] - start_B[:, None], 0, self.cfg.max_len - 1)
        S = T if cache is None else cache[0][0].shape[1]
        if key_ok_BS is None:
            key_ok_BS = jnp.arange(S)[None, :] >= start_B[:, None]
        x = self.embed(tokens_BT)
        if self.cfg.positions == "learned":
            x = x + self.pos_embed(pos_BT)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, pos_BT, key_ok_BS, offset, None if cache is None else cache[i])
            new_cache.append(c)
        logits = self.unembed(self.ln_f(x)).astype(jnp.float32)
        return logits, (None if cache is None else tuple(new_cache))


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=jnp.float32):
    """Zero KV cache: one (k, v) pair of shape (batch, length, heads, head_dim) per layer."""
    shape = (batch, length, cfg.n_heads, cfg.d_model // cfg.n_heads)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.n_layers))


def start_index(prompt_BP) -> jnp.ndarray:
    """Index of each row's first non-PAD token (its BOS) in a left-padded prompt region."""
    return jnp.argmax(prompt_BP != 0, axis=1).astype(jnp.int32)


def init_params(cfg: ModelConfig, seed: int):
    """(graphdef, params) of a fresh model; params is an nnx.State pytree to pass into jitted steps."""
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, params


def apply(graphdef, params, tokens_BT, start_B, **kw):
    """Pure forward: rebuild the model from (graphdef, params) and return (logits_BTV, cache)."""
    return nnx.merge(graphdef, params)(tokens_BT, start_B, **kw)


def param_path(path) -> str:
    """Dotted name of a parameter path, e.g. ('blocks', 0, 'attn', 'q', 'kernel') -> 'blocks.0.attn.q.kernel'."""
    return ".".join(str(p) for p in path)


def flat_params(params) -> dict[str, np.ndarray]:
    """{dotted name: numpy array} of every parameter (the checkpoint and snapshot form)."""
    return {param_path(path): np.asarray(v[...]) for path, v in nnx.to_flat_state(params)}


def unflatten_params(template, flat: dict):
    """nnx.State shaped like ``template`` holding the arrays of ``flat`` (names from ``flat_params``)."""
    leaves = []
    for path, v in nnx.to_flat_state(template):
        leaves.append((path, v.replace(jnp.asarray(flat[param_path(path)]))))
    return nnx.from_flat_state(leaves)


def matrix_name(dotted: str) -> str | None:
    """Stable matrix name of a 2-D weight ('blocks.1.attn.q.kernel' -> 'block1/attn/q'); None for vectors."""
    parts = dotted.split(".")
    if parts[-1] not in ("kernel", "embedding"):
        return None
    if parts[0] == "blocks":
        return f"block{parts[1]}/" + "/".join(parts[2:-1])
    return parts[0]


def weight_matrices(flat: dict) -> dict[str, np.ndarray]:
    """Every weight matrix as 2-D (out, in) arrays under stable names.

    NNX stores a Linear kernel as (in, out); we return its transpose so rows are output units, as in
    the paper's W (so "row stripes in Q/K/V" means the same thing here). Embedding tables keep their
    (vocab or position, d_model) shape. This is the one function that maps parameters to matrices.
    """
    out = {}
    for dotted, arr in flat.items():
        name = matrix_name(dotted)
        if name is None or np.ndim(arr) != 2:
            continue
        out[name] = np.asarray(arr).T if dotted.endswith("kernel") else np.asarray(arr)
    return out
