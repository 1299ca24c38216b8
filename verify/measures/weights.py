"""Weight-matrix pairs of a run: (W0, W1) of the base and a snapshot, float64, in (out, in) layout
(``toy_models.transformer.weight_matrices``); embedding tables and the unembedding included, vectors not."""

from __future__ import annotations

import numpy as np

from toy_models.transformer import weight_matrices


def as_f64(flat: dict) -> dict[str, np.ndarray]:
    """Every tensor as float64 (bf16 values are exact in float64)."""
    return {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in flat.items()}


def matrix_pairs(run, step="final", master: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{matrix name: (W0, W1)} in (out, in) layout for the base and a snapshot of a run, float64.

    Embedding tables and the unembedding are included; vectors (biases, norms) are not."""
    w0 = weight_matrices(as_f64(run.snapshot("base", master=master)))
    w1 = weight_matrices(as_f64(run.snapshot(step, master=master)))
    return {k: (w0[k], w1[k]) for k in w0}


def block_matrices(pairs: dict) -> dict:
    """Only the transformer-block matrices (attention and MLP), the ones the paper's figures show."""
    return {k: v for k, v in pairs.items() if k.startswith("block")}


def pairs(ctx, run, step="final", master: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``matrix_pairs`` of a run, memoised for the verify call: the fp32 master weights (``master``) or the
    released bf16 export."""
    return ctx.memo(("pairs", run.directory.name, str(step), master), lambda: matrix_pairs(run, step, master=master))


def block_pairs(ctx, run, step="final", master: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The transformer-block matrices of ``pairs`` (attention q/k/v/o, fc_in, fc_out)."""
    return block_matrices(pairs(ctx, run, step, master))
