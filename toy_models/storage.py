"""Storage precision modes for fine-tuning.

- ``fp32``: parameters live in float32.
- ``bf16``: parameters are rounded to bf16 after every update (sub-ULP steps are lost for good);
  optimizer state stays float32. Values are kept in float32 containers that hold bf16-exact values.
- ``fp32_master``: float32 training; the released checkpoint is the bf16 export of the master
  weights (only the accumulated change must cross half a ULP to show). Snapshots keep the master.

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
    """What a snapshot file holds: bf16 arrays for ``bf16``; float32 for ``fp32`` and for the
    ``fp32_master`` master weights (their bf16 export is ``export_bf16`` of them, computed on read)."""
    if mode == "bf16":
        return export_bf16(flat)
    return {k: np.asarray(v, np.float32) for k, v in flat.items()}


def export_bf16(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bf16 checkpoint a user would download: every tensor rounded to nearest-even bf16."""
    return {k: np.asarray(to_bf16(np.asarray(v, np.float32)), dtype=ml_dtypes.bfloat16) for k, v in flat.items()}


def stored_view(flat: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """The released form of a snapshot of ``mode``: fp32 as is, bf16 as is, fp32_master exported to bf16."""
    return export_bf16(flat) if mode == "fp32_master" else flat
