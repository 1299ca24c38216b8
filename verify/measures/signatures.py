"""The signatures of an update that the paper reports for RLVR (C1, C10, C11) and claims for preference training
(C13), one number each per run: bf16 sparsity over all parameters (``sparsity.bf16_sparsity``, as gate3.sparsity);
normalised spectral shift and the largest top-k principal angle, mean over block matrices (``spectra.drift``, fp32
master, as gate2.spectrum); principal energy over its isotropic level (``spectra.energy_ratio``, as gate2.energy); and
the principal overlap of the changed block weights minus the magnitude-matched null's expectation
(``masks.null_excess``). ``pair_signatures`` gives the same numbers for hand-made (W0, W1) pairs
of block matrices (planted controls), with sparsity over those matrices."""

from __future__ import annotations

import numpy as np

from theory.precision import changed_mask_bitwise, to_bf16
from verify.measures.masks import ALPHA, null_excess, principal_and_low_magnitude, principal_null_excess
from verify.measures.sparsity import bf16_sparsity
from verify.measures.spectra import drift, energy_ratio, spectral_drift
from verify.measures.weights import block_pairs

SIGNATURES = ("sparsity", "nss", "angle", "energy", "overlap")
RATIO_SIGNATURES = ("nss", "angle", "energy")  # compared as log2 ratios; the others as differences


def run_signature(ctx, run, name: str) -> float:
    """Signature ``name`` of a finished run (or a run read at a snapshot), memoised."""

    def compute():
        if name == "sparsity":
            return bf16_sparsity(run)
        if name in ("nss", "angle"):
            return drift(ctx, run)[0 if name == "nss" else 1]
        if name == "energy":
            return energy_ratio(block_pairs(ctx, run, master=True))
        if name == "overlap":
            return null_excess(ctx, run)["excess"]
        raise ValueError(f"Unknown signature {name!r}; known: {', '.join(SIGNATURES)}.")

    return ctx.memo(("signature", name, run.directory.name), compute)


def run_signatures(ctx, run) -> dict[str, float]:
    """{signature: value} of a finished run (or a run read at a snapshot), each memoised."""
    return {s: run_signature(ctx, run, s) for s in SIGNATURES}


def pair_signatures(pairs: dict, seed: int = 0) -> dict[str, float]:
    """{signature: value} of hand-made pairs {name: (W0, W1)}: W0 bf16 values (a released base), W1 the fp32 master
    after the update; masks compare bf16(W0) with bf16(W1), sparsity counts these matrices only."""
    w0 = {n: np.asarray(a, np.float64) for n, (a, _) in pairs.items()}
    changed = {n: changed_mask_bitwise(np.asarray(a, np.float32), to_bf16(np.asarray(b, np.float32)))
               for n, (a, b) in pairs.items()}
    principal = {n: principal_and_low_magnitude(w, ALPHA)[0] for n, w in w0.items()}
    n_changed = sum(int(np.count_nonzero(c)) for c in changed.values())
    nss, angle = spectral_drift(pairs)
    return {"sparsity": 1.0 - n_changed / sum(c.size for c in changed.values()), "nss": nss, "angle": angle,
            "energy": energy_ratio(pairs), "overlap": principal_null_excess(w0, changed, principal, seed)["excess"]}


def contrast(name: str, a: float, b: float) -> float:
    """How ``a`` differs from ``b`` on signature ``name``: log2(a / b) for the ratio signatures, a - b otherwise."""
    if name in RATIO_SIGNATURES:
        return float(np.log2(a / b)) if a > 0 and b > 0 else float("nan")
    return float(a - b)
