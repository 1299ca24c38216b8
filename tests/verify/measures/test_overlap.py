"""Overlap measures of changed masks (verify/measures/jaccard.py, masks.py, stripes.py, temporal.py): Jaccard and
its two chance levels by hand, ULP strata, pairwise excess of identical and independent masks, the stripe
nulls' line counts, and the row/column profile of masks and probability maps."""

import numpy as np
import pytest

from verify.measures.jaccard import excess_by_matrix, jaccard_triplet, magnitude_baseline, pairwise_jaccard
from verify.measures.masks import in_mask_share, ulp_strata
from verify.measures.stripes import null_line_counts
from verify.measures.temporal import profile_vector

A = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
B = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)


def test_jaccard_and_bernoulli_level_by_hand():
    one = np.zeros(A.shape, np.int64)
    j, bern, mag = jaccard_triplet(A, B, one, one)
    assert j == pytest.approx(2 / 4)  # intersection {(0,0), (1,0)}, union 4
    p = q = 3 / 8
    assert bern == pytest.approx(p * q / (p + q - p * q)) and bern == pytest.approx(9 / 39)
    assert mag == pytest.approx(bern)  # one stratum: the magnitude-matched level is the Bernoulli level


def test_magnitude_baseline_by_hand():
    strata = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    # stratum 0: A changes 3/4, B 2/4; stratum 1: A 0/4, B 1/4
    inter = 4 * (3 / 4 * 2 / 4) + 4 * 0.0
    union = 4 * (3 / 4 + 2 / 4 - 3 / 8) + 4 * (0 + 1 / 4 - 0)
    assert magnitude_baseline(A, strata, B, strata) == pytest.approx(inter / union) == pytest.approx(1 / 3)


def test_ulp_strata_group_by_binade_and_merge_small_ones():
    w0 = np.array([0.1] * 20 + [0.11] * 5 + [1.0] * 20 + [3.0] * 3)
    s = ulp_strata(w0, min_count=16)
    assert len(set(s[:25])) == 1  # 0.1 and 0.11 share the binade [2^-4, 2^-3)
    assert s[0] != s[25] and len(set(s[25:])) == 1  # 3.0 (3 weights) joins the 1.0 stratum


def test_pairwise_excess_of_identical_and_independent_masks():
    rng = np.random.default_rng(0)
    strata = {"m": np.zeros((40, 40), np.int64)}
    same = [{"m": rng.random((40, 40)) < 0.4}] * 3
    b, m = excess_by_matrix(pairwise_jaccard(same, strata))
    assert b[0] == pytest.approx(1 - 0.25, abs=0.05) and m[0] == pytest.approx(b[0])
    indep = [{"m": rng.random((40, 40)) < 0.4} for _ in range(4)]
    b, m = excess_by_matrix(pairwise_jaccard(indep, strata))
    assert abs(b[0]) < 0.03 and abs(m[0]) < 0.03


def test_null_line_counts_keep_totals_and_strata():
    rng = np.random.default_rng(2)
    mask = rng.random((6, 10)) < 0.4
    strata = np.repeat(np.arange(2), 5)[None, :].repeat(6, 0)  # columns 0-4 stratum 0, 5-9 stratum 1
    for axis in (0, 1):
        counts = null_line_counts(mask, strata, axis, 50, rng)
        assert (counts.sum(axis=1) == mask.sum()).all()
    # rows within strata: every row holds 5 weights of each stratum, so the row totals follow the stratum counts
    counts = null_line_counts(mask, strata, 1, 200, rng)
    assert counts.max() <= 10 and counts.min() >= 0


def test_profile_vector_reads_masks_and_probability_maps():
    """Row then column ratios of a mask (as theory.spectral.row_ratios / col_ratios), and the plain row and column
    means of a map of change probabilities (the magnitude-expected profile of C4), not its nonzero pattern."""
    m = np.array([[1, 0, 0], [1, 1, 1]], bool)
    assert profile_vector({"m": m}).tolist() == pytest.approx([1 / 3, 1, 1, 0.5, 0.5])
    probs = np.array([[0.2, 0.4, 0.6], [0.1, 0.1, 0.1]])
    assert profile_vector({"m": probs}).tolist() == pytest.approx([0.4, 0.1, 0.15, 0.25, 0.35])


def test_in_mask_share_by_hand():
    changed = {"m": np.array([[1, 1, 0, 0]], bool)}
    masks = {"m": (np.array([[1, 0, 1, 0]], bool), np.array([[0, 1, 0, 1]], bool))}
    p, low, density = in_mask_share(changed, masks)
    assert (p, low, density) == pytest.approx((0.5 - 0.5, 0.5 - 0.5, 0.5))
    assert in_mask_share({"m": np.zeros((1, 4), bool)}, masks)[2] == 0.0
