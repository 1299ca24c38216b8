"""preference.signatures (C13) decision rule on hand-made and planted numbers, every outcome reached; the
contrasts and the gate claims' statistics of the descriptive rows; the planted positive control on a synthetic base."""

import numpy as np
import pytest

from theory.precision import to_bf16
from verify.claims import preference as C
from verify.controls.preference import planted_pairs
from verify.measures.signatures import SIGNATURES, contrast
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from verify.rules import UNDERPOWERED

RL = {"sparsity": 0.30, "nss": 0.002, "angle": 3.0, "energy": 1.5, "overlap": -0.004}


def sigs(shift: dict | None = None, noise: float = 0.0, n: int = 5, seed: int = 0) -> list[dict]:
    """Per-seed signatures: RL's, each moved by ``shift`` (additive, or a factor for the ratio signatures) and by
    relative noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = {}
        for s, v in RL.items():
            e = rng.normal(0.0, noise)
            d[s] = v * (shift or {}).get(s, 1.0) * 2 ** e if s in ("nss", "angle", "energy") else v + (shift or {}).get(s, 0.0) + 0.05 * e
        out.append(d)
    return out


def test_contrast_is_a_log2_ratio_for_spectra_and_energy_and_a_difference_otherwise():
    assert contrast("nss", 0.004, 0.002) == pytest.approx(1.0)
    assert contrast("energy", 1.0, 4.0) == pytest.approx(-2.0)
    assert contrast("sparsity", 0.30, 0.25) == pytest.approx(0.05)
    assert contrast("overlap", -0.01, 0.0) == pytest.approx(-0.01)
    assert np.isnan(contrast("angle", 0.0, 1.0))


def test_equivalence_rule_reaches_every_outcome():
    rl = sigs(noise=0.05, seed=1)
    status, out = C.decide_same({"DPO": (sigs(noise=0.05, seed=2), rl)})
    assert status == REPRODUCED and len(out) == len(SIGNATURES)
    # sparser by 0.2 on every seed: the sparsity interval lies wholly outside the 0.05 margin
    status, out = C.decide_same({"DPO": (sigs({"sparsity": 0.2}, noise=0.05, seed=2), rl)})
    assert status == NOT_REPRODUCED and out["DPO vs RL: bf16 sparsity"].status == NOT_REPRODUCED
    # NSS 4 times RL's: log2 ratio 2, outside the 0.5 margin
    status, out = C.decide_same({"SimPO": (sigs({"nss": 4.0}, noise=0.05, seed=3), rl)})
    assert status == NOT_REPRODUCED and out["SimPO vs RL: NSS"].status == NOT_REPRODUCED
    # seed-to-seed spread far beyond the margin: the angle's interval contains 0 but shows no equivalence
    spread = [1.0, -1.2, 0.8, -0.9, 0.3]
    wide_sigs = [{**a, "angle": b["angle"] * 2 ** c} for a, b, c in zip(sigs(noise=0.05, seed=2), rl, spread)]
    status, out = C.decide_same({"DPO": (wide_sigs, rl)})
    assert status == INCONCLUSIVE
    wide = out["DPO vs RL: largest top-k angle"]
    lo, hi = wide.interval.bounds()
    assert lo < 0 < hi and wide.status == INCONCLUSIVE and UNDERPOWERED in wide.qualifiers
    # both methods are needed: one equivalent and one not gives NOT REPRODUCED
    status, _ = C.decide_same({"DPO": (sigs(noise=0.05, seed=2), rl), "SimPO": (sigs({"sparsity": -0.2}, 0.05, seed=3), rl)})
    assert status == NOT_REPRODUCED


def test_the_descriptive_rows_use_the_gate_claims_statistics():
    run = {"sparsity": 0.4, "nss": 0.001, "angle": 2.0, "energy": 1.0, "overlap": -0.02}
    sft = {"sparsity": 0.1, "nss": 0.004, "angle": 8.0, "energy": 4.0, "overlap": 0.01}
    assert C.apart_value("sparsity", run, sft) == pytest.approx(0.3)
    for s in ("nss", "angle", "energy"):
        assert C.apart_value(s, run, sft) == pytest.approx(2.0)  # log2(SFT / run)
    assert C.apart_value("overlap", run, sft) == -0.02  # the run's own excess, below -0.01
    assert C.APART["overlap"].decide(C.Interval.of([-0.02, -0.021, -0.019])).status == REPRODUCED
    assert C.APART["sparsity"].decide(C.Interval.of([0.01, 0.02, 0.0])).status == NOT_REPRODUCED


@pytest.fixture(scope="module")
def synthetic_base():
    rng = np.random.default_rng(0)
    shapes = {"block0/attn/q": (32, 32), "block0/attn/v": (32, 32), "block0/fc_in": (64, 32)}
    out = {}
    for name, shape in shapes.items():
        u, _ = np.linalg.qr(rng.normal(size=(shape[0], shape[0])))
        v, _ = np.linalg.qr(rng.normal(size=(shape[1], shape[1])))
        spectrum = 2.0 * 0.8 ** np.arange(min(shape))  # a decaying spectrum with gaps, as a pretrained matrix has
        w = (u[:, : len(spectrum)] * spectrum) @ v[:, : len(spectrum)].T
        w = np.asarray(to_bf16(w.astype(np.float32)), np.float32).astype(np.float64)
        out[name] = (w, w)
    return out


def test_planted_updates_drawn_alike_read_the_same_and_sft_like_ones_do_not(synthetic_base):
    planted = planted_pairs(synthetic_base, C.PLANTED_UNITS)
    status, _ = C.decide_same({"planted": ([a for a, _ in planted], [b for _, b in planted])})
    assert status == REPRODUCED
    # the same pairs with the preference role's sparsity lowered by 0.1: no longer the same
    moved = [{**a, "sparsity": a["sparsity"] - 0.1} for a, _ in planted]
    assert C.decide_same({"planted": (moved, [b for _, b in planted])})[0] == NOT_REPRODUCED
