"""The magnitude-matched null (theory/null.py): exact change probabilities, the fit, overlaps, Jaccard and stripes.

Each test plants a mechanism with a known answer: an isotropic drift on a Gaussian base (no geometry: every
overlap must be explained by magnitude), a preference for a region within strata, a set shared by two
runs, row stripes. Seeds are fixed; ranges are the central 95 % of 200 null draws.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from theory import null as N
from theory import precision as P
from theory import spectral as S


def _gaussian_base(seed: int, shape=(256, 192), scale: float = 0.02) -> np.ndarray:
    return P.to_bf16(scale * np.random.default_rng(seed).standard_normal(shape))


def _drift(w0: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """The fp32 master after an isotropic Gaussian drift (float64 here, exact to the bf16 and fp16 roundings)."""
    return w0.astype(np.float64) + sigma * np.random.default_rng(seed).standard_normal(w0.shape)


@pytest.mark.parametrize("w,fmt", [(1.5, "bf16"), (2.0, "bf16"), (-4.0, "bf16"), (0.0, "bf16"), (2.0**-130, "bf16"),
                                   (2.0**-126, "bf16"), (1.5, "fp16"), (2.0**-20 * 1.5, "fp16"), (0.0, "fp16")])
@pytest.mark.parametrize("sigma_in_gaps", [0.3, 1.0, 3.0])
def test_change_probability_is_the_simulated_share(w, fmt, sigma_in_gaps):
    w0 = P.to_bf16(np.array([w]))
    a = np.abs(w0.astype(np.float64))
    L, U = N.rounding_distances(a, fmt)
    sigma = sigma_in_gaps * float(max(L[0], U[0]))
    p = float(N.change_probability(L, U, sigma)[0])
    d = sigma * np.random.default_rng(1).standard_normal(400_000)
    w1 = w0.astype(np.float64) + d
    if fmt == "bf16":
        changed = P.changed_mask_bitwise(np.broadcast_to(w0, d.shape), P.to_bf16(w1))
    else:
        changed = P.changed_mask_fp16(np.broadcast_to(w0.astype(np.float64), d.shape), w1)
    se = np.sqrt(p * (1 - p) / d.size)
    assert abs(changed.mean() - p) <= 4.5 * se + 1e-12


def test_power_of_two_has_the_half_gap_below():
    L, U = N.rounding_distances(np.array([2.0, 3.0, 2.0**-126, 0.0]))
    h = P.half_ulp_bf16(np.array([2.0, 3.0, 2.0**-126, 0.0]))
    np.testing.assert_array_equal(U, h)
    np.testing.assert_array_equal(L, [h[0] / 2, h[1], h[2], h[3]])  # only a normal power of two above 2^-126


def test_fit_matches_the_observed_share_by_construction():
    w0 = _gaussian_base(0, (300, 200))
    a = np.abs(w0.astype(np.float64))
    rng = np.random.default_rng(2)
    changed = rng.random(w0.shape) < np.clip(0.9 - 20 * a, 0.02, 0.95)  # any magnitude dependence at all
    res = N.magnitude_null(w0, changed, rng=N.null_rng("t"))
    fit = res.fit
    counts = N.magnitude_counts(w0)
    for s, h in enumerate(fit.half_ulp):
        in_s = P.half_ulp_bf16(w0) == h
        assert fit.n[s] == in_s.sum() and fit.changed[s] == (changed & in_s).sum()
        expected = float(np.sum(counts * fit.p_bf16 * (N._HALF_ULP == h)))
        assert expected == pytest.approx(fit.changed[s], rel=1e-9, abs=1e-9)
    sh = res.changed_share.summary()
    assert sh["null"] == pytest.approx(sh["observed"], rel=1e-10) == changed.mean()
    assert sh["null_low"] <= sh["observed"] <= sh["null_high"] and sh["beyond_null"] is False


def test_fit_recovers_a_constant_drift_and_predicts_the_fp16_export():
    w0 = _gaussian_base(3, (400, 300))
    sigma = 2e-4
    w1 = _drift(w0, sigma, 4)
    changed = P.changed_mask_relative(w0, P.to_bf16(w1))
    res = N.magnitude_null(w0, changed, changed_fp16=P.changed_mask_fp16(w0, w1), rng=N.null_rng("t"))
    fit = res.fit
    share = fit.changed / fit.n
    ok = (fit.n >= 3000) & (share > 0.05) & (share < 0.95)
    assert ok.sum() >= 3
    np.testing.assert_allclose(fit.sigma[ok], sigma, rtol=0.05)
    assert fit.pooled_sigma == pytest.approx(sigma, rel=0.03) and 0 < fit.pooled_log_sd < 0.03
    fp16 = res.fp16_share.summary()
    assert fp16["observed"] > res.changed_share.value().observed + 0.1  # fp16's finer grid shows more of the drift
    assert fp16["null_low"] <= fp16["observed"] <= fp16["null_high"], fp16


def _masks(w0: np.ndarray, k: int = 8) -> dict:
    with jax.enable_x64(True):
        w = w0.astype(np.float64)
        return {"principal": np.asarray(S.principal_mask(w, k, 0.5)), "low_magnitude": np.asarray(S.low_magnitude_mask(w, 0.5))}


def test_isotropic_update_on_a_gaussian_base_is_explained_by_magnitude():
    w0 = _gaussian_base(5)
    changed = P.changed_mask_relative(w0, P.to_bf16(_drift(w0, 1.5e-4, 6)))
    regions = _masks(w0)
    res = N.magnitude_null(w0, changed, regions, rng=N.null_rng("iso"))
    low = res.overlaps["low_magnitude"].summary()
    assert low["observed"] > 0.55  # raw: "goes for small weights", against the random level 0.5
    for name in regions:
        s = res.overlaps[name].summary()
        assert s["excess_low"] <= 0 <= s["excess_high"] and s["beyond_null"] is False, (name, s)


def test_a_preference_within_strata_is_beyond_the_null():
    w0 = _gaussian_base(7)
    rng = np.random.default_rng(8)
    region = rng.random(w0.shape) < 0.5  # no relation to magnitude
    base = P.changed_mask_relative(w0, P.to_bf16(_drift(w0, 1.5e-4, 9)))
    changed = base & (region | (rng.random(w0.shape) < 0.8))  # 20 % of changes outside the region dropped
    res = N.magnitude_null(w0, changed, {"r": region}, rng=N.null_rng("pref"))
    s = res.overlaps["r"].summary()
    assert s["excess"] > 0.05 and s["excess_low"] > 0 and s["beyond_null"] is True


def test_pooled_ratios_add_counts_and_draws():
    w0a, w0b = _gaussian_base(10, (64, 64)), _gaussian_base(11, (80, 32))
    ca = P.changed_mask_relative(w0a, P.to_bf16(_drift(w0a, 2e-4, 12)))
    cb = P.changed_mask_relative(w0b, P.to_bf16(_drift(w0b, 5e-4, 13)))
    ra, rb = N.magnitude_null(w0a, ca, rng=N.null_rng("a")), N.magnitude_null(w0b, cb, rng=N.null_rng("b"))
    pooled = ra.changed_share + rb.changed_share
    assert pooled.value().observed == pytest.approx((ca.sum() + cb.sum()) / (ca.size + cb.size))
    np.testing.assert_array_equal(pooled.draws_num, ra.changed_share.draws_num + rb.changed_share.draws_num)


def test_counts_entry_point_equals_the_array_entry_point():
    w0 = _gaussian_base(14, (48, 40))
    changed = P.changed_mask_relative(w0, P.to_bf16(_drift(w0, 3e-4, 15)))
    region = _masks(w0, 4)["principal"]
    direct = N.magnitude_null(w0, changed, {"principal": region}, rng=N.null_rng("x", 3))
    streamed = N.magnitude_null_from_counts(
        N.magnitude_counts(w0), N.magnitude_counts(w0, changed),
        {"principal": (N.magnitude_counts(w0, region), float((changed & region).sum()))}, rng=N.null_rng("x", 3))
    assert direct.overlaps["principal"].summary() == streamed.overlaps["principal"].summary()
    np.testing.assert_array_equal(direct.fp16_share.draws_num, streamed.fp16_share.draws_num)


def test_independent_runs_meet_the_magnitude_jaccard_and_a_shared_set_exceeds_it():
    w0 = _gaussian_base(16)
    runs = [P.changed_mask_relative(w0, P.to_bf16(_drift(w0, 1.5e-4, 17 + r))) for r in range(3)]
    res = N.runs_null(w0, runs, rng=N.null_rng("runs"))
    m = res.mean_jaccard.summary()
    p, q = runs[0].mean(), runs[1].mean()
    assert res.jaccard[(0, 1)].value().observed > float(S.jaccard_random_baseline(p, q)) + 0.005  # raw: "beyond chance"
    assert m["excess_low"] <= 0 <= m["excess_high"], m  # but explained by magnitude
    for name in ("rows", "cols"):
        s = res.stripes[name].summary()
        assert s["excess_low"] <= 0 <= s["excess_high"], (name, s)
    shared = np.random.default_rng(30).random(w0.shape) < 0.1
    res2 = N.runs_null(w0, [r | shared for r in runs], rng=N.null_rng("runs"))
    assert res2.mean_jaccard.summary()["excess_low"] > 0


def test_row_stripes_are_beyond_the_null_and_columns_are_not():
    w0 = _gaussian_base(20, (200, 160))
    rows = np.random.default_rng(21).random(200) < 0.25
    runs = []
    for r in range(3):
        drift = P.changed_mask_relative(w0, P.to_bf16(_drift(w0, 1e-4, 22 + r)))
        runs.append(drift | (rows[:, None] & (np.random.default_rng(40 + r).random(w0.shape) < 0.5)))
    res = N.runs_null(w0, runs, rng=N.null_rng("stripes"))
    assert res.stripes["rows"].summary()["excess_low"] > 0
    c = res.stripes["cols"].summary()
    assert c["excess_low"] <= 0 <= c["excess_high"], c


def test_stripe_statistic_is_the_variance_of_consensus_line_ratios():
    counts = np.array([[2, 4, 0], [4, 2, 0]])
    assert N.stripe_statistic(counts, 4) == pytest.approx(np.var([0.75, 0.75, 0.0]))


def test_bad_arguments_name_the_argument():
    w0 = _gaussian_base(0, (4, 4))
    with pytest.raises(ValueError, match="`changed`"):
        N.magnitude_null(w0, np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="`regions"):
        N.magnitude_null(w0, np.zeros((4, 4), bool), {"r": np.zeros((4, 5), bool)})
    with pytest.raises(ValueError, match="`w0`"):
        N.magnitude_null(np.full((2, 2), np.nan), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="`changed_counts`"):
        N.fit_drift(N.magnitude_counts(w0), N.magnitude_counts(w0) + 1)
    with pytest.raises(ValueError, match="two masks"):
        N.runs_null(w0, [np.zeros((4, 4), bool)])


def test_a_null_mask_keeps_the_changed_share_of_each_stratum_and_nothing_else():
    """null_mask: the draw's changed share per equal-ULP stratum matches the observed one (within binomial noise),
    and a planted structure (changes only in the first half of the rows) does not survive the draw."""
    import numpy as np

    from theory.null import magnitude_bits, null_mask
    from theory.precision import half_ulp_bf16, to_bf16

    rng = np.random.default_rng(0)
    w0 = to_bf16(rng.normal(0, 0.1, (400, 100))).astype(np.float32)
    changed = np.zeros(w0.shape, bool)
    changed[:200] = rng.random((200, 100)) < 0.02 / (half_ulp_bf16(w0[:200]) * 1e3)
    draw = null_mask(w0, changed, np.random.default_rng(1))
    levels = half_ulp_bf16(w0)
    for h in np.unique(levels):
        sel = levels == h
        if sel.sum() > 2000:
            assert abs(draw[sel].mean() - changed[sel].mean()) < 4 * np.sqrt(changed[sel].mean() / sel.sum()) + 1e-3
    assert changed[200:].sum() == 0 and draw[200:].sum() > 0.3 * draw.sum()
    assert magnitude_bits(w0).shape == w0.shape
