"""Update masks fixed once from the base weights W0, and an optimizer wrapper that honours them
(docs/science.md claim C14, masked RL fine-tuning).

Masked tensors: the weight matrices of the transformer blocks (attention q, k, v, o kernels and the
MLP fc_in, fc_out kernels). Each is scored as the paper's W, the (out, in) matrix of
``toy_models.transformer.weight_matrices`` (the transpose of the stored (in, out) kernel), and the
mask is transposed back to the kernel frame, so it agrees entry for entry (ties included) with the
masks ``theory.spectral`` computes on ``weight_matrices`` during analysis. Per matrix, True = trainable:

- ``principal``: the top ``alpha`` share of entries by |rank-k reconstruction of W0| (LIFT;
  ``theory.spectral.principal_mask``, exactly ``mask_count(m * n, alpha)`` entries);
- ``non_principal``: its complement;
- ``low_magnitude``: the bottom ``low_alpha`` share of |W0| (``theory.spectral.low_magnitude_mask``);
- ``safe``: non_principal OR low_magnitude;
- ``random``: a uniformly random mask with exactly as many entries as that matrix's ``safe`` mask;
- ``none``: everything trainable (the dense baseline; ``other`` is ignored).

Every other tensor (token and position embeddings, unembedding, layer norms, biases) is wholly
trainable (``other='train'``, the default, so the comparison between masks is only about block
matrices and the dense baseline differs from a masked run only there) or wholly frozen
(``other='freeze'``).

Training with a mask: wrap the optimizer with ``masked_optimizer`` so masked coordinates stay
bitwise unchanged in every storage mode of ``toy_models.storage``.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toy_models.config import check
from toy_models.transformer import ModelConfig, unflatten_params
from theory.spectral import low_magnitude_mask, principal_mask

MASK_KINDS = ("none", "principal", "non_principal", "low_magnitude", "safe", "random")
_BLOCK_MATRIX = re.compile(r"blocks\.\d+\.(attn\.[qkvo]|fc_in|fc_out)\.kernel")


@dataclass(frozen=True)
class MaskConfig:
    """Which fixed update mask to train under (claim C14); the fields are explained in the module docstring.

    Defaults follow the paper's table: alpha = 0.5 (principal share), low_alpha = 0.586 (low-magnitude
    share). ``k`` must not exceed the smallest dimension of any block matrix (checked by ``build_masks``).
    """

    kind: Literal["none", "principal", "non_principal", "low_magnitude", "safe", "random"] = "none"
    k: int = 4
    alpha: float = 0.5
    low_alpha: float = 0.586
    seed: int = 0
    other: Literal["train", "freeze"] = "train"

    def __post_init__(self):
        check(self.kind in MASK_KINDS, "mask.kind", f"must be one of {list(MASK_KINDS)}, got {self.kind!r}")
        check(isinstance(self.k, int) and not isinstance(self.k, bool) and self.k >= 1, "mask.k",
              f"must be a positive integer, got {self.k!r}")
        check(_is_share(self.alpha), "mask.alpha", f"must lie in (0, 1), got {self.alpha!r}")
        check(_is_share(self.low_alpha), "mask.low_alpha", f"must lie in (0, 1), got {self.low_alpha!r}")
        check(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0, "mask.seed",
              f"must be a non-negative integer, got {self.seed!r}")
        check(self.other in ("train", "freeze"), "mask.other", f"must be 'train' or 'freeze', got {self.other!r}")


def _is_share(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x < 1


def is_block_matrix(name: str) -> bool:
    """True for the dotted names of the masked tensors: q/k/v/o, fc_in and fc_out kernels of a block."""
    return _BLOCK_MATRIX.fullmatch(name) is not None


def _matrix_mask_out_in(W_out_in: np.ndarray, cfg: MaskConfig, name: str) -> np.ndarray:
    """The mask of one block matrix in the (out, in) frame."""
    if cfg.kind == "principal":
        return np.asarray(principal_mask(W_out_in, cfg.k, cfg.alpha))
    if cfg.kind == "non_principal":
        return ~np.asarray(principal_mask(W_out_in, cfg.k, cfg.alpha))
    if cfg.kind == "low_magnitude":
        return np.asarray(low_magnitude_mask(W_out_in, cfg.low_alpha))
    safe = ~np.asarray(principal_mask(W_out_in, cfg.k, cfg.alpha)) | np.asarray(low_magnitude_mask(W_out_in, cfg.low_alpha))
    if cfg.kind == "safe":
        return safe
    # random: exactly as many entries as the safe mask, drawn uniformly, seeded per tensor name
    rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode())])
    chosen = rng.choice(safe.size, size=int(safe.sum()), replace=False)
    out = np.zeros(safe.size, bool)
    out[chosen] = True
    return out.reshape(safe.shape)


def check_mask_fits(cfg: MaskConfig, model: ModelConfig) -> None:
    """Raise ConfigError naming ``mask.k`` when the rank k exceeds the smallest dimension of the block
    matrices of ``model`` (min(d_model, d_ff)); for a RunConfig's ``__post_init__``."""
    if cfg.kind in ("principal", "non_principal", "safe", "random"):
        limit = min(model.d_model, model.d_ff)
        check(cfg.k <= limit, "mask.k", f"must not exceed min(model.d_model, model.d_ff)={limit}, got {cfg.k}")


def build_masks(flat_base: dict[str, np.ndarray], cfg: MaskConfig) -> dict[str, np.ndarray]:
    """Masks of claim C14 from the base weights: {dotted name: bool array shaped like the tensor},
    True = trainable, one per tensor of ``flat_base`` (semantics in the module docstring).

    Build them from the weights the run starts from (the bf16-rounded base, after any edit).
    Raises ConfigError naming ``mask.k`` when k exceeds a block matrix's smallest dimension.
    """
    masks = {}
    for name, value in flat_base.items():
        shape = np.shape(value)
        if cfg.kind == "none":
            masks[name] = np.ones(shape, bool)
        elif not is_block_matrix(name) or len(shape) != 2:
            masks[name] = np.full(shape, cfg.other == "train")
        else:
            check(cfg.k <= min(shape), "mask.k", f"must not exceed the smallest dimension {min(shape)} of `{name}`, got {cfg.k}")
            W_out_in = np.asarray(value, np.float32).T
            masks[name] = np.ascontiguousarray(_matrix_mask_out_in(W_out_in, cfg, name).T)
    return masks


def mask_density(masks: dict[str, np.ndarray]) -> dict:
    """Share trainable: {'overall': over all entries, 'block_matrices': over the masked block matrices
    (the paper's "share of params"; NaN if there are none), 'per_tensor': {name: share}}."""
    per = {name: float(np.mean(m)) if np.size(m) else float("nan") for name, m in masks.items()}
    total = sum(np.size(m) for m in masks.values())
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    b_total = sum(np.size(m) for n, m in masks.items() if is_block_matrix(n))
    b_kept = sum(int(np.count_nonzero(m)) for n, m in masks.items() if is_block_matrix(n))
    return {
        "overall": kept / total if total else float("nan"),
        "block_matrices": b_kept / b_total if b_total else float("nan"),
        "per_tensor": per,
    }


def masks_tree(template, masks: dict[str, np.ndarray]):
    """The masks as an nnx.State shaped like the params ``template`` (float32 1.0 = trainable, 0.0 = frozen),
    the form ``masked_optimizer`` takes."""
    return unflatten_params(template, {k: np.asarray(v, np.float32) for k, v in masks.items()})


def masked_optimizer(opt: optax.GradientTransformation, masks) -> optax.GradientTransformation:
    """``opt`` restricted to the trainable coordinates of ``masks`` (claim C14's masked fine-tuning).

    ``masks`` is a pytree shaped like the params (``masks_tree``; nonzero or True = trainable). Masked
    coordinates get
    - a zero gradient going into ``opt`` (so global statistics such as a global-norm clip see only
      trainable coordinates), and
    - an update of exactly -0.0 coming out of it, after everything ``opt`` does, AdamW's decoupled
      weight decay included (which would otherwise move frozen weights).
    -0.0 is the one float with p + (-0.0) == p bitwise for every p (+0.0 and -0.0 included), so
    ``optax.apply_updates`` leaves masked coordinates bit for bit as they were; the bf16 mode's
    rounding then keeps them too, since the base is already bf16-exact. The masks become constants of
    the jitted step (they are fixed for the run).
    """

    def init(params):
        return opt.init(params)

    def update(updates, state, params=None):
        grads = jax.tree.map(lambda g, m: jnp.where(m != 0, g, jnp.zeros((), g.dtype)), updates, masks)
        out, state = opt.update(grads, state, params)
        out = jax.tree.map(lambda u, m: jnp.where(m != 0, u, jnp.asarray(-0.0, u.dtype)), out, masks)
        return out, state

    return optax.GradientTransformation(init, update)
