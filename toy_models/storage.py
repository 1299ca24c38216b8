"""Storage precision modes for fine-tuning.

- ``fp32``: parameters live in float32.
- ``bf16``: parameters are rounded to bf16 after every update (sub-ULP steps are lost for good);
  optimizer state stays float32. Values are kept in float32 containers that hold bf16-exact values.
- ``fp32_master``: float32 training; snapshots are exported as bf16 (only the accumulated change
  must cross half a ULP to show).

Every mode starts from the bf16-rounded base, so W0 is the same released checkpoint in all of them.
Rounding goes through ``theory.precision`` (ml_dtypes is the reference; JAX's cast agrees bit for bit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from theory.precision import to_bf16, to_bf16_jax

MODES = ("fp32", "bf16", "fp32_master")


def round_tree_bf16(tree):
    """Every leaf rounded to the nearest bf16 value (ties to even), returned as float32."""
    return jax.tree.map(lambda x: to_bf16_jax(x).astype(jnp.float32), tree)


def after_update(params, mode: str):
    """Apply the storage rule of ``mode`` to freshly updated parameters."""
    return round_tree_bf16(params) if mode == "bf16" else params


def stored_flat(flat: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """The checkpoint a user would see: bf16 arrays for ``bf16``/``fp32_master``, float32 for ``fp32``."""
    if mode == "fp32":
        return {k: np.asarray(v, np.float32) for k, v in flat.items()}
    return {k: np.asarray(to_bf16(np.asarray(v, np.float32)), dtype=ml_dtypes.bfloat16) for k, v in flat.items()}
