"""Case studies (claims C3, C4, C12, C14): Jaccard and its baselines on hand-computed masks, every decision rule
on planted inputs in both directions, and the C12 frame mapping on planted updates. A real masked run whose
masked coordinates never change is in test_case_studies_slow.py; each claim's controls flip on tiny in
test_verify.py (slow)."""

import numpy as np
import pytest

from theory.precision import changed_mask_bitwise, to_bf16
from toy_models.interventions import EditConfig, apply_edit
from verify.claims import consistency as cc
from verify.claims import intervention as ci
from verify.claims import masked as cm
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

A = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
B = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)


# ----------------------------------------------------------------------------------------------
# Jaccard and baselines


def test_jaccard_and_bernoulli_level_by_hand():
    one = np.zeros(A.shape, np.int64)
    j, bern, mag = cc.jaccard_triplet(A, B, one, one)
    assert j == pytest.approx(2 / 4)  # intersection {(0,0), (1,0)}, union 4
    p = q = 3 / 8
    assert bern == pytest.approx(p * q / (p + q - p * q)) and bern == pytest.approx(9 / 39)
    assert mag == pytest.approx(bern)  # one stratum: the magnitude-matched level is the Bernoulli level


def test_magnitude_baseline_by_hand():
    strata = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    # stratum 0: A changes 3/4, B 2/4; stratum 1: A 0/4, B 1/4
    inter = 4 * (3 / 4 * 2 / 4) + 4 * 0.0
    union = 4 * (3 / 4 + 2 / 4 - 3 / 8) + 4 * (0 + 1 / 4 - 0)
    assert cc.magnitude_baseline(A, strata, B, strata) == pytest.approx(inter / union) == pytest.approx(1 / 3)


def test_ulp_strata_group_by_binade_and_merge_small_ones():
    w0 = np.array([0.1] * 20 + [0.11] * 5 + [1.0] * 20 + [3.0] * 3)
    s = cc.ulp_strata(w0, min_count=16)
    assert len(set(s[:25])) == 1  # 0.1 and 0.11 share the binade [2^-4, 2^-3)
    assert s[0] != s[25] and len(set(s[25:])) == 1  # 3.0 (3 weights) joins the 1.0 stratum


def test_pairwise_excess_of_identical_and_independent_masks():
    rng = np.random.default_rng(0)
    strata = {"m": np.zeros((40, 40), np.int64)}
    same = [{"m": rng.random((40, 40)) < 0.4}] * 3
    b, m = cc.excess_by_matrix(cc.pairwise_jaccard(same, strata))
    assert b[0] == pytest.approx(1 - 0.25, abs=0.05) and m[0] == pytest.approx(b[0])
    indep = [{"m": rng.random((40, 40)) < 0.4} for _ in range(4)]
    b, m = cc.excess_by_matrix(cc.pairwise_jaccard(indep, strata))
    assert abs(b[0]) < 0.03 and abs(m[0]) < 0.03


# ----------------------------------------------------------------------------------------------
# decision rules on planted inputs


def test_decide_jaccard_both_ways():
    assert cc.decide_jaccard([0.10, 0.12, 0.11, 0.09], [0.08, 0.09, 0.07, 0.10])[0] == REPRODUCED
    # beats the Bernoulli level but not the magnitude-matched one: the ULP confound
    assert cc.decide_jaccard([0.10, 0.12, 0.11, 0.09], [0.001, -0.002, 0.0, 0.001])[0] == NOT_REPRODUCED
    assert cc.decide_jaccard([0.10, 0.12, 0.11], [0.0, 0.2, 0.05])[0] == INCONCLUSIVE


def test_decide_stripes_and_stripe_test_both_ways():
    assert cc.decide_stripes(0.001, 0.002) == REPRODUCED
    assert cc.decide_stripes(0.3, 0.4) == NOT_REPRODUCED
    assert cc.decide_stripes(0.01, 0.3) == NOT_REPRODUCED  # lines beyond independence that magnitude alone explains
    assert cc.decide_stripes(0.3, 0.01) == INCONCLUSIVE  # the two nulls disagree
    rng = np.random.default_rng(1)
    strata = {f"block0/attn/{x}": rng.integers(0, 3, (24, 24)) for x in "qkvo"}
    shapes = {n: s.shape for n, s in strata.items()}
    right = cc.stripe_test(cc._planted_stripes(strata, shapes, 5, 2, True), strata, draws=199)
    wrong = cc.stripe_test(cc._planted_stripes(strata, shapes, 5, 2, False), strata, draws=199)
    assert cc.decide_stripes(right["p_independence"], right["p_magnitude"]) == REPRODUCED
    # stripes on the other axis leave only the magnitude-driven line structure on the paper's axes: it beats the
    # independence null (so the control exercises the ULP confound) but not the magnitude null
    assert wrong["p_independence"] < cc.STRIPE_P <= wrong["p_magnitude"]
    assert cc.decide_stripes(wrong["p_independence"], wrong["p_magnitude"]) == NOT_REPRODUCED


def test_null_line_counts_keep_totals_and_strata():
    rng = np.random.default_rng(2)
    mask = rng.random((6, 10)) < 0.4
    strata = np.repeat(np.arange(2), 5)[None, :].repeat(6, 0)  # columns 0-4 stratum 0, 5-9 stratum 1
    for axis in (0, 1):
        counts = cc.null_line_counts(mask, strata, axis, 50, rng)
        assert (counts.sum(axis=1) == mask.sum()).all()
    # rows within strata: every row holds 5 weights of each stratum, so the row totals follow the stratum counts
    counts = cc.null_line_counts(mask, strata, 1, 200, rng)
    assert counts.max() <= 10 and counts.min() >= 0


def test_decide_temporal_both_ways():
    assert cc.decide_temporal([0.9, 0.92, 0.95])[0] == REPRODUCED
    assert cc.decide_temporal([0.1, 0.2, 0.15])[0] == NOT_REPRODUCED
    shapes = {"block0/attn/q": (32, 32), "block0/fc_in": (64, 32)}
    steps = list(range(4, 33, 4))
    stable = [cc.min_corr_from(cc._planted_rows(shapes, steps, s, True), 8) for s in range(3)]
    unstable = [cc.min_corr_from(cc._planted_rows(shapes, steps, s, False), 8) for s in range(3)]
    assert cc.decide_temporal(stable)[0] == REPRODUCED
    assert cc.decide_temporal(unstable)[0] == NOT_REPRODUCED


def test_profile_vector_reads_masks_and_probability_maps():
    """Row then column ratios of a mask (as theory.spectral.row_ratios / col_ratios), and the plain row and column
    means of a map of change probabilities (the magnitude-expected profile of C4), not its nonzero pattern."""
    m = np.array([[1, 0, 0], [1, 1, 1]], bool)
    assert cc.profile_vector({"m": m}).tolist() == pytest.approx([1 / 3, 1, 1, 0.5, 0.5])
    probs = np.array([[0.2, 0.4, 0.6], [0.1, 0.1, 0.1]])
    assert cc.profile_vector({"m": probs}).tolist() == pytest.approx([0.4, 0.1, 0.15, 0.25, 0.35])


def test_decide_intervention_both_ways():
    assert ci.decide_intervention([0.001, -0.002, 0.0], [0.05, 0.055, 0.06], 0.05, 0.055)[0] == REPRODUCED
    assert ci.decide_intervention([0.05, 0.045, 0.05], [0.05, 0.055, 0.06], 0.05, 0.055)[0] == NOT_REPRODUCED
    assert ci.decide_intervention([0.0, 0.0, 0.0], [0.01, 0.012, 0.011], 0.05, 0.055)[0] == NOT_REPRODUCED  # drops everywhere
    assert ci.decide_intervention([0.0, 0.0], [0.0, 0.0], 0.001, 0.001)[0] == INCONCLUSIVE  # nothing to lose


def test_decide_masked_both_ways():
    assert cm.decide_masked(*cm._planted(1))[0] == REPRODUCED
    dense, principal, safe, dist = cm._planted(2)
    assert cm.decide_masked(principal, dense, safe, dist)[0] == NOT_REPRODUCED  # principal-only gains most
    farthest = dict(dist, safe=[5.0, 5.0, 5.0])
    assert cm.decide_masked(dense, principal, safe, farthest)[0] == NOT_REPRODUCED


def test_kl_distance():
    assert cm.kl_distance([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert cm.kl_distance([2.0, 4.0], [1.0, 2.0]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# C12 frames on planted updates


def _toy_flat(rng):
    d, ff = 4, 6
    shapes = {"blocks.0.attn.q.kernel": (d, d), "blocks.0.attn.k.kernel": (d, d), "blocks.0.attn.v.kernel": (d, d),
              "blocks.0.attn.o.kernel": (d, d), "blocks.0.fc_in.kernel": (d, ff), "blocks.0.fc_in.bias": (ff,),
              "blocks.0.fc_out.kernel": (ff, d)}
    return {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("kind", ["rotate_vo", "permute_heads", "permute_mlp"])
def test_original_frame_changes_recover_a_planted_update(kind):
    """An update planted in the original frame, carried into the edited frame by the edit, trained 'on' the
    edited bf16 base and mapped back, changes exactly the planted coordinates of the original base."""
    rng = np.random.default_rng(3)
    flat = _toy_flat(rng)
    w0_orig = {k: to_bf16(v).astype(np.float32) for k, v in flat.items()}
    edited, record = apply_edit(flat, EditConfig(kind, layer=0, seed=5), n_heads=2)
    base_edit = {k: to_bf16(v).astype(np.float32) for k, v in edited.items()}
    support = {k: rng.random(v.shape) < 0.3 for k, v in flat.items()}
    d_orig = {k: np.where(support[k], 0.25 * np.abs(w0_orig[k]) + 0.05, 0.0) for k in flat}  # far above half a ULP
    d_edit, _ = apply_edit(d_orig, EditConfig(kind, layer=0, seed=5), n_heads=2)  # the same linear map moves updates
    final_master = {k: (base_edit[k].astype(np.float64) + d_edit[k]).astype(np.float32) for k in flat}
    back = ci.original_frame_changes(base_edit, final_master, record, w0_orig)
    kernels = [k for k in flat if k.endswith("kernel")]
    assert sorted(back) == sorted(kernels)
    for k in kernels:
        expected = changed_mask_bitwise(w0_orig[k], to_bf16(w0_orig[k].astype(np.float64) + d_orig[k]))
        assert (expected == support[k]).all()
        assert (back[k] == expected).all(), k
    moved = [k for k in kernels if k in {t for t in ci.edited_tensors(record)}]
    raw = {k: changed_mask_bitwise(base_edit[k], to_bf16(final_master[k])) for k in kernels}
    assert any((raw[k] != support[k]).any() for k in moved)  # in raw coordinates the planted set has moved
