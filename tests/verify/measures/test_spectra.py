"""Rank-r energy shares of an update (verify/measures/spectra.py, C16) against updates of known spectrum, and the
isotropic reference."""

import numpy as np
import pytest

from verify.measures.spectra import energy_curve, isotropic_energy_share, rank_energy_share, ranks_for_energy


def _known(m, n, s, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = len(s)
    return U[:, :k] @ np.diag(s) @ V[:, :k].T


def test_rank_energy_share_matches_a_known_spectrum():
    s = np.array([3.0, 2.0, 1.0, 0.5])
    dW = _known(32, 64, s)
    total = np.sum(s**2)
    for r in range(1, 5):
        assert rank_energy_share(dW, r) == pytest.approx(np.sum(s[:r] ** 2) / total, rel=1e-10)
    assert rank_energy_share(dW, 100) == pytest.approx(1.0)  # r capped at min(m, n)
    assert rank_energy_share(5.0 * dW.T, 2) == pytest.approx(13 / total.item(), rel=1e-10)  # scale and transpose free


def test_ranks_for_energy_and_curves_on_planted_pairs():
    W0 = np.zeros((32, 32))
    pairs = {"a": (W0, _known(32, 32, [3.0, 0.5], 1)), "b": (W0, _known(32, 32, [1.0, 1.0, 1.0, 1.0, 1.0], 2))}
    assert ranks_for_energy(pairs, 0.9) == pytest.approx((1 + 5) / 2)
    curve = energy_curve(pairs, (1, 2))
    assert curve[1] == pytest.approx((9 / 9.25 + 0.2) / 2)
    assert curve[2] == pytest.approx((1.0 + 0.4) / 2)


def test_isotropic_share_is_a_proper_reference():
    vals = [isotropic_energy_share(32, 64, r, draws=8) for r in (1, 4, 16, 32)]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert vals[-1] == pytest.approx(1.0)
    assert 1 / 32 < vals[0] < 0.2  # the top direction of noise holds more than its 1/min(m, n) share, but little
