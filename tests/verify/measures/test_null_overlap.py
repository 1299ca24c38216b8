"""Magnitude-corrected principal overlap (verify/measures/masks.py: principal_null_excess) and the signatures of hand-made pairs
(verify/measures/signatures.py): a changed mask drawn from the magnitude-matched null has no excess, one that skips
half of the region's changes has a clearly negative one (the region cuts across strata); an untouched matrix is fully sparse."""

import numpy as np
import pytest

from theory.null import null_mask, null_rng
from theory.precision import to_bf16
from verify.measures.masks import principal_null_excess
from verify.measures.signatures import pair_signatures


def overlap_excess(w0, changed, region):
    return principal_null_excess(w0, changed, region)["excess"]


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(0)
    w0 = {f"m{i}": np.asarray(to_bf16(rng.normal(0, 0.1, (64, 64)).astype(np.float32)), np.float64) for i in range(3)}
    region = {n: rng.random(w.shape) < 0.5 for n, w in w0.items()}  # half of the weights, in every stratum
    return w0, region


def test_a_null_draw_has_no_excess_and_planted_avoidance_a_negative_one(weights):
    w0, region = weights
    rng = np.random.default_rng(1)
    changed = {n: rng.random(w.shape) < np.clip(0.02 / np.abs(w), 0, 0.9) for n, w in w0.items()}  # magnitude only
    drawn = {n: null_mask(w0[n], changed[n], null_rng(n, 2)) for n in w0}
    assert abs(overlap_excess(w0, drawn, region)) < 0.02
    assert abs(overlap_excess(w0, changed, region)) < 0.02
    avoiding = {n: changed[n] & ~(region[n] & (rng.random(w0[n].shape) < 0.5)) for n in w0}
    assert overlap_excess(w0, avoiding, region) < -0.1


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the energy of a zero update is undefined (NaN)
def test_signatures_of_an_untouched_and_a_moved_matrix(weights):
    w0, _ = weights
    rng = np.random.default_rng(3)
    still = pair_signatures({n: (w, w.copy()) for n, w in w0.items()})
    assert still["sparsity"] == 1.0 and still["nss"] == 0.0 and np.isnan(still["overlap"])
    moved = pair_signatures({n: (w, w + rng.normal(0, 1e-2, w.shape)) for n, w in w0.items()})
    assert moved["sparsity"] < 0.2 and moved["nss"] > 0 and moved["angle"] > 0
