"""Real-checkpoint analyzer: ``python -m verify pair BASE TUNED``, ``pairs BASE T1 T2 ...`` and the Python API.

    from verify.realckpt import analyze_pair
    rows, summary = analyze_pair(BASE, TUNED)      # pandas DataFrame of per-tensor rows, summary dict

Streams checkpoints tensor by tensor through the metric functions of ``theory/`` that the toy claims use
(docs/design.md, "Real checkpoints enter at the same metrics"): bf16-aware update sparsity (C1, C2) against the
paper's bands and the magnitude-matched null of ``theory.null`` (with the fp16 export it predicts), spectrum
drift and principal angles (C10), principal and low-magnitude overlap against their nulls and principal energy
over k against the isotropic level (C11), the structure of dW, and across runs Jaccard and stripes against
the null with consensus maps (C3) and changes between consecutive checkpoints (C4).

Modules: ``layout`` (files, shards, names), ``stream`` (chunked reading, bits, BLAS threads), ``linalg``
(Gram matrices, eigensolver), ``select`` (masks by histogram selection), ``spectra`` (metrics from Gram matrices), ``tensor`` (the full
analysis of one tensor name, in a worker), ``sparsity`` (the sparsity-only pass), ``job``, ``analyze``
(matching, process pool), ``summary`` (whole-model pooling), ``reading`` (what it means), ``rows`` and ``api``
(CSV rows, DataFrames), ``figures``, ``outputs``, ``staging`` (the output folder), ``options``, ``cli``.
"""

__all__ = ["analyze_pair", "analyze_pairs", "PairAnalysis", "PairsAnalysis"]


def __getattr__(name: str):
    """The API names, imported on first use (so worker processes and ``layout`` users do not import pandas)."""
    if name in __all__:
        from verify.realckpt import api

        return getattr(api, name)
    raise AttributeError(f"module 'verify.realckpt' has no attribute {name!r}")
