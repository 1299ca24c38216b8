"""Storage precision modes for fine-tuning.

- ``fp32``: parameters live in float32.
- ``bf16``: parameters are rounded to bf16 after every update (sub-ULP steps are lost for good);
  optimizer state stays float32. Values are kept in float32 containers that hold bf16-exact values.
- ``fp32_master``: float32 training; the released checkpoint is the bf16 export of the master
  weights (only the accumulated change must cross half a ULP to show). Snapshots keep the master.
- ``fp16_master``: the same float32 training (bit for bit the run ``fp32_master`` trains), released as
  an IEEE fp16 export of the master weights (the precision counterfactual of Gate III: fp16 keeps 11
  significant bits against bf16's 8, so the same drift shows in far more weights). An fp16 export must be
  compared as values (``theory.precision.changed_mask_fp16``), never with the bf16 relative probe:
  neighbouring fp16 values differ by 2^-11 to 2^-10 relative, below its eta = 1e-3.

Every mode starts from the bf16-rounded base, so W0 is the same released checkpoint in all of them.
Rounding goes through ``theory.precision`` (ml_dtypes is the reference for bf16, numpy's float16 cast for
fp16; JAX's bf16 cast agrees bit for bit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from theory.precision import to_bf16, to_bf16_jax, to_fp16

MODES = ("fp32", "bf16", "fp32_master", "fp16_master")
MASTER_EXPORTS = {"fp32_master": "bf16", "fp16_master": "fp16"}  # modes that train fp32 and release an export


def round_tree_bf16(tree):
    """Every leaf rounded to the nearest bf16 value (ties to even), returned as float32."""
    return jax.tree.map(lambda x: to_bf16_jax(x).astype(jnp.float32), tree)


def after_update(params, mode: str):
    """Apply the storage rule of ``mode`` to freshly updated parameters."""
    return round_tree_bf16(params) if mode == "bf16" else params


def stored_flat(flat: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """What a snapshot file holds: bf16 arrays for ``bf16``; float32 for ``fp32`` and for the master weights of
    ``fp32_master`` and ``fp16_master`` (their export, ``export_bf16`` or ``export_fp16``, is computed on read)."""
    if mode == "bf16":
        return export_bf16(flat)
    return {k: np.asarray(v, np.float32) for k, v in flat.items()}


def export_bf16(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bf16 checkpoint a user would download: every tensor rounded to nearest-even bf16."""
    return {k: np.asarray(to_bf16(np.asarray(v, np.float32)), dtype=ml_dtypes.bfloat16) for k, v in flat.items()}


def export_fp16(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fp16 checkpoint of the counterfactual release: every tensor rounded to nearest-even IEEE fp16 by numpy's
    float32 -> float16 cast (``theory.precision.to_fp16``): subnormals below 2^-14 kept, magnitudes at or above
    65520 overflow to inf, signed zeros kept."""
    return {k: to_fp16(np.asarray(v, np.float32)) for k, v in flat.items()}


def stored_view(flat: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
    """The released form of a snapshot of ``mode``: fp32 as is, bf16 as is, fp32_master exported to bf16,
    fp16_master exported to fp16."""
    export = MASTER_EXPORTS.get(mode)
    if export is None:
        return flat
    return export_bf16(flat) if export == "bf16" else export_fp16(flat)
