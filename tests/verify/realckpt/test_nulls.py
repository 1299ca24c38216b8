"""`pair` / `pairs` read against their nulls: magnitude-matched overlaps, isotropic energies, dW structure, fp16.

Planted answers: an isotropic drift on Gaussian bases (every overlap explained by magnitude), a drift kept off
the principal mask (principal excess below 0), an update inside the base's top subspace (energy far above
isotropic), a rank-1 update (dW structure), a new strong direction (an intruder), an F32 tuned checkpoint (fp16
export measured and predicted), consecutive checkpoints with known step sets (C4).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.verify.realckpt.helpers import drift, gaussian, load, low_rank, record, run, save_pair
from theory import precision as P
from theory import spectral as S
from verify.realckpt import spectra as SP

UP, GATE, Q = "model.layers.{}.mlp.up_proj.weight", "model.layers.{}.mlp.gate_proj.weight", "model.layers.{}.self_attn.q_proj.weight"


def test_isotropic_update_on_gaussian_bases_is_explained_by_magnitude(tmp_path, capsys):
    base = {}
    for i in range(3):
        base[UP.format(i)] = gaussian(10 + i, (192, 96))
        base[Q.format(i)] = gaussian(20 + i, (96, 96))
    tuned = {n: P.to_bf16(drift(w, 1.2e-4, 30 + j)) for j, (n, w) in enumerate(base.items())}
    b, t = save_pair(tmp_path, base, tuned)
    rc, out, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", "8")
    assert rc == 0, err
    s = load(tmp_path / "o")
    null = s["null"]
    assert null["changed_share"]["null"] == pytest.approx(null["changed_share"]["observed"], rel=1e-9)
    assert null["changed_share"]["null_low"] <= null["changed_share"]["observed"] <= null["changed_share"]["null_high"]
    assert null["low_mag_overlap"]["observed"] > 0.53  # raw overlap: "prefers small weights" (large ULPs hide changes)
    for key in ("principal_overlap", "low_mag_overlap"):
        x = null[key]
        assert x["excess_low"] <= 0 <= x["excess_high"] and x["beyond_null"] is False, (key, x)
    assert sum("explained by magnitude" in line for line in s["reading"]) == 2
    assert "explained by magnitude" in out
    rec = record(s, UP.format(0))
    assert rec["low_mag_overlap_null_low"] <= rec["low_mag_overlap_null"] <= rec["low_mag_overlap_null_high"]


def test_drift_kept_off_the_principal_mask_reads_below_the_null(tmp_path, capsys):
    k = 4
    w0 = low_rank(1, 192, 96, k)
    with jax.enable_x64(True):
        principal = np.asarray(S.principal_mask(w0.astype(np.float64), k, 0.5))
    off = P.to_bf16(drift(w0, 3e-4, 2, where=~principal))
    b, t = save_pair(tmp_path, {UP.format(0): w0}, {UP.format(0): off})
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", str(k))
    assert rc == 0, err
    s = load(tmp_path / "o")
    rec = record(s, UP.format(0))
    assert rec["principal_overlap"] < 0.05
    assert rec["principal_overlap_excess"] < 0 and rec["principal_overlap_excess_high"] < 0
    assert s["null"]["principal_overlap"]["beyond_null"] is True
    assert any("Principal-mask" in line and "less than the null" in line for line in s["reading"])


def test_update_inside_the_top_subspace_has_a_large_energy_ratio_and_matches_theory(tmp_path, capsys):
    k, m, n = 4, 128, 64
    w0 = low_rank(3, m, n, k)
    w = w0.astype(np.float64)
    u, sv, vt = np.linalg.svd(w)
    inside = (w + 0.01 * (u[:, :k] * sv[:k]) @ vt[:k]).astype(np.float32)  # F32: dW stays in the subspace
    b, t = save_pair(tmp_path, {UP.format(0): w0}, {UP.format(0): inside})
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", str(k), "--sweep", "4,16,48,100")
    assert rc == 0, err
    rec = record(load(tmp_path / "o"), UP.format(0))
    assert rec["sweep_k"] == [4, 16, 48, 64]  # 100 clipped to min(m, n)
    assert rec["energy_ratio_k4"] > 100 and rec["energy_k4"] > 0.99
    dW = inside.astype(np.float64) - w
    with jax.enable_x64(True):
        for req, ke in zip((4, 16, 48, 100), rec["sweep_k"]):
            assert rec[f"energy_k{req}"] == pytest.approx(float(S.principal_energy_fraction(w, dW, ke)), rel=1e-8)
            assert rec[f"energy_iso_k{req}"] == ke * ke / (m * n)


def test_rank_one_update_structure_and_spectral_residual(tmp_path, capsys):
    m, n = 160, 96
    w0 = gaussian(4, (m, n))
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal(m), rng.standard_normal(n)
    dW = 0.02 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    w1 = (w0.astype(np.float64) + dW).astype(np.float32)
    b, t = save_pair(tmp_path, {UP.format(0): w0}, {UP.format(0): w1})
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", "8")
    assert rc == 0, err
    rec = record(load(tmp_path / "o"), UP.format(0))
    d = w1.astype(np.float64) - w0.astype(np.float64)
    sd = np.linalg.svd(d, compute_uv=False)
    assert rec["dw_top1_share"] == pytest.approx(sd[0] ** 2 / np.sum(sd**2), rel=1e-9) and rec["dw_top1_share"] > 0.999
    assert rec["dw_rank90"] == 1 and rec["dw_stable_rank"] == pytest.approx(1.0, abs=1e-3)
    assert rec["dw_norm2"] == pytest.approx(sd[0], rel=1e-9)
    assert rec["dw_top1_isotropic"] == pytest.approx((np.sqrt(m) + np.sqrt(n)) ** 2 / (m * n))
    s0, s1 = np.linalg.svd(w0.astype(np.float64), compute_uv=False), np.linalg.svd(w1.astype(np.float64), compute_uv=False)
    assert rec["spectral_residual"] == pytest.approx(np.linalg.norm(s1 - s0) / np.linalg.norm(d), rel=1e-6)
    assert rec["spectral_residual_isotropic"] == pytest.approx(1 / np.sqrt(m))
    assert rec["angle_determined"] is (rec["gap_at_k"] > 2 * rec["dw_norm2"])


def test_a_new_strong_direction_is_an_intruder_and_a_small_drift_is_not(tmp_path, capsys):
    m, n, k = 128, 64, 4
    w0 = low_rank(6, m, n, k)
    w = w0.astype(np.float64)
    u, _, vt = np.linalg.svd(w)
    a, c = u[:, 10], vt[10]  # orthogonal to the base's top-8 on both sides
    new = (w + 1.2 * np.outer(a, c)).astype(np.float32)
    small = P.to_bf16(drift(w0, 1e-4, 7))
    b, t = save_pair(tmp_path, {UP.format(0): w0, GATE.format(0): w0}, {UP.format(0): new, GATE.format(0): small})
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", str(k), "--sweep", "8")
    assert rc == 0, err
    s = load(tmp_path / "o")
    assert record(s, UP.format(0))["intruders"] == 1
    assert record(s, GATE.format(0))["intruders"] == 0


def test_f32_tuned_fp16_export_is_measured_and_the_drift_predicts_it(tmp_path, capsys):
    base = {UP.format(i): gaussian(40 + i, (192, 128)) for i in range(3)}
    tuned = {n: drift(w, 6e-5, 50 + j).astype(np.float32) for j, (n, w) in enumerate(base.items())}
    b, t = save_pair(tmp_path, base, tuned)
    rc, out, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", "8")
    assert rc == 0, err
    s = load(tmp_path / "o")
    measured = 1 - sum(int(np.count_nonzero(P.changed_mask_fp16(base[n], tuned[n]))) for n in base) / s["params"]
    assert s["sparsity_fp16"] == pytest.approx(measured, abs=1e-12)
    fp = s["null"]["fp16_sparsity_predicted"]
    assert fp["measured"] == pytest.approx(measured)
    assert fp["low"] <= measured <= fp["high"], fp
    assert fp["sparsity"] < s["sparsity_bf16"] - 0.2  # fp16's finer grid shows more of the same drift
    assert "Rounded from F32" in out and "measured on this F32 checkpoint" in out


def test_consecutive_checkpoints_shares_trend_and_early_set_kept(tmp_path, capsys):
    w0 = gaussian(60, (160, 96))
    rng = np.random.default_rng(61)
    order = rng.permutation(w0.size)
    steps, sizes, cur, ckpts = [0.12, 0.09, 0.06, 0.035, 0.02], [], w0.copy(), []
    start = 0
    for share in steps:  # each checkpoint moves a new, disjoint set of weights by one ULP
        idx = order[start:start + int(share * w0.size)]
        start += idx.size
        cur = cur.copy()
        cur.reshape(-1).view(np.uint16)[idx] += 1
        sizes.append(idx.size)
        ckpts.append(cur)
    paths = [tmp_path / "b.safetensors"]
    from verify.realckpt.layout import save_safetensors

    save_safetensors(paths[0], {UP.format(0): w0})
    for i, c in enumerate(ckpts):
        paths.append(tmp_path / f"t{i}.safetensors")
        save_safetensors(paths[-1], {UP.format(0): c})
    rc, out, err = run(capsys, "pairs", *paths, "--out", tmp_path / "o", "--rank", "4")
    assert rc == 0, err
    s = load(tmp_path / "o", "pairs.json")
    c = s["consecutive"]
    assert c["changed_share"] == pytest.approx([n / w0.size for n in sizes], abs=1e-12)
    assert c["trend"]["slope"] < 0 and c["trend"]["high"] < 0
    kept = c["kept_share"]
    assert kept["observed"] == 1.0 and kept["excess_low"] > 0  # the first set is all still changed at the end
    rec = s["tensors"][0]
    assert rec["consecutive_changed"] == sizes[1:] and rec["kept_share"] == 1.0
    assert "step order" in out and "C4:" in out


def test_reduced_factors_keep_the_principal_angles_tiny_ones_included():
    rng = np.random.default_rng(8)
    m, k = 300, 6
    A0, _ = np.linalg.qr(rng.standard_normal((m, k)))
    for eps in (1e-9, 1e-4, 0.3):
        A1, _ = np.linalg.qr(A0 + eps * rng.standard_normal((m, k)))
        with jax.enable_x64(True):
            direct = np.asarray(S.principal_angles_from_factors(A0, A1))
            reduced = np.asarray(S.principal_angles_from_factors(*SP.reduced_factors(A0, A1)))
        np.testing.assert_allclose(reduced, direct, rtol=1e-7, atol=1e-15)
