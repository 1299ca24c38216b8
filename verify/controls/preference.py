"""Planted controls of preference.signatures (C13): updates drawn from one distribution, so that two of them carry
the same signatures by construction, on the block matrices of a real base."""

from __future__ import annotations

import numpy as np

from verify.controls.updates import planted
from verify.measures.signatures import pair_signatures
from verify.measures.spectra import top_k

PLANTED_RELATIVE_NORM = 0.01  # ||dW||_F / ||W0||_F of the planted updates (a drift of about 5 half-ULPs here)
SECOND_DRAW = 1000  # the second update of a planted pair uses seed + this


def isotropic_signatures(base_pairs: dict, seed: int) -> dict[str, float]:
    """Signatures (``pair_signatures``) of an isotropic Gaussian update of every base block matrix, ||dW||_F =
    ``PLANTED_RELATIVE_NORM`` ||W0||_F, seeded by ``seed`` and the matrix's index."""
    pairs = {}
    for i, (name, (W0, _)) in enumerate(sorted(base_pairs.items())):
        W0 = np.asarray(W0, np.float64)
        dW = planted(W0, "random", PLANTED_RELATIVE_NORM * np.linalg.norm(W0), top_k(W0), 1000 * seed + i)
        pairs[name] = (W0, (W0 + dW).astype(np.float32).astype(np.float64))
    return pair_signatures(pairs, seed)


def planted_pairs(base_pairs: dict, seeds) -> list[tuple[dict, dict]]:
    """Per seed: (signatures of one planted update, of a second one drawn the same way): equal signatures by
    construction (the positive control of the equivalence rule)."""
    return [(isotropic_signatures(base_pairs, s), isotropic_signatures(base_pairs, s + SECOND_DRAW)) for s in seeds]
