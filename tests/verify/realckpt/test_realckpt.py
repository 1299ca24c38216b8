"""Real-checkpoint analyzer (verify/realckpt): layouts, planted updates, truncated SVD, bad input, toy runs.

Synthetic checkpoints are small decoders with Hugging Face names (3 layers, d_model 64); planted updates
have a known answer: a known set of coordinates moved by exactly one bf16 ULP (bit pattern + 1), moves
below half an ULP that vanish in bf16 (F32-stored tuned checkpoint), and updates inside or outside the
top-k singular subspace. The truncated-SVD route and the streaming masks are checked against the full
SVD and the ``theory.spectral`` reference functions.
"""

from __future__ import annotations

import json

import jax
import ml_dtypes
import numpy as np
import pytest
import scipy.linalg

from theory import precision as P
from theory import spectral as S
from verify.realckpt import linalg as LA
from verify.realckpt import select as Sel
from verify.realckpt import stream as St
from verify.realckpt import tensor as T
from verify.realckpt.cli import main
from verify.realckpt.layout import (
    Checkpoint,
    is_kernel,
    parse_name,
    save_safetensors,
    write_sharded,
)

BF = ml_dtypes.bfloat16
D, FF, VOCAB, KV = 64, 128, 96, 32


def _decoder(seed: int = 0, layers: int = 3) -> dict[str, np.ndarray]:
    """A small bf16 decoder with Hugging Face names (grouped-query k/v, untied head, norms)."""
    rng = np.random.default_rng(seed)
    g = lambda *shape: (0.05 * rng.standard_normal(shape)).astype(np.float32).astype(BF)
    out = {"model.embed_tokens.weight": g(VOCAB, D)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": (1 + g(D).astype(np.float32)).astype(BF),
            p + "self_attn.q_proj.weight": g(D, D), p + "self_attn.q_proj.bias": g(D),
            p + "self_attn.k_proj.weight": g(KV, D), p + "self_attn.v_proj.weight": g(KV, D),
            p + "self_attn.o_proj.weight": g(D, D),
            p + "post_attention_layernorm.weight": (1 + g(D).astype(np.float32)).astype(BF),
            p + "mlp.gate_proj.weight": g(FF, D), p + "mlp.up_proj.weight": g(FF, D), p + "mlp.down_proj.weight": g(D, FF),
        })
    out["model.norm.weight"] = (1 + g(D).astype(np.float32)).astype(BF)
    out["lm_head.weight"] = g(VOCAB, D)
    return out


def _bump(x: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, int]:
    """Copy of bf16 ``x`` with exactly round(share * size) coordinates moved by one ULP (bits + 1)."""
    y = np.array(x, copy=True)
    count = round(share * y.size)
    idx = np.random.default_rng(seed).permutation(y.size)[:count]
    y.reshape(-1).view(np.uint16)[idx] += 1
    return y, count


def _run(capsys, *argv, figures: bool = False) -> tuple[int, str]:
    rc = main([*map(str, argv), "--quiet", *([] if figures else ["--no-figures"])])
    return rc, capsys.readouterr().err


def _record(summary: dict, name: str) -> dict:
    return next(r for r in summary["tensors"] if r["name"] == name)


# ----------------------------------------------------------------------------------------------
# names and layouts


@pytest.mark.parametrize("name,layer,kind", [
    ("model.layers.3.self_attn.q_proj.weight", 3, "q"), ("model.layers.0.self_attn.k_proj.bias", 0, "k"),
    ("model.layers.11.self_attn.v_proj.weight", 11, "v"), ("model.layers.2.self_attn.o_proj.weight", 2, "o"),
    ("model.layers.5.mlp.gate_proj.weight", 5, "gate"), ("model.layers.5.mlp.up_proj.weight", 5, "up"),
    ("model.layers.5.mlp.down_proj.weight", 5, "down"), ("model.embed_tokens.weight", None, "embed"),
    ("lm_head.weight", None, "head"), ("model.norm.weight", None, "norm"),
    ("model.layers.1.input_layernorm.weight", 1, "norm"), ("model.layers.1.self_attn.q_norm.weight", 1, "norm"),
    ("blocks.1.attn.q.kernel", 1, "q"), ("blocks.0.attn.o.kernel", 0, "o"), ("blocks.2.fc_in.kernel", 2, "up"),
    ("blocks.2.fc_out.bias", 2, "down"), ("embed.embedding", None, "embed"), ("pos_embed.embedding", None, "embed"),
    ("unembed.kernel", None, "head"), ("blocks.0.ln1.scale", 0, "norm"), ("ln_f.bias", None, "norm"),
    ("transformer.h.4.attn.c_proj.weight", 4, "o"), ("transformer.h.4.mlp.c_proj.weight", 4, "down"),
    ("transformer.h.4.attn.c_attn.weight", 4, "other"), ("model.layers.0.mlp.gate.weight", 0, "other"),
    ("layers.7.feed_forward.w1.weight", 7, "gate"), ("layers.7.attention.wo.weight", 7, "o"), ("output.weight", None, "head"),
])
def test_parse_name(name, layer, kind):
    assert parse_name(name) == (layer, kind)


def test_kernel_names_are_transposed_like_weight_matrices():
    assert is_kernel("blocks.0.attn.q.kernel") and is_kernel("unembed.kernel")
    assert not is_kernel("model.layers.0.self_attn.q_proj.weight") and not is_kernel("embed.embedding")


# ----------------------------------------------------------------------------------------------
# planted updates: sharded base with index, tied head, missing / extra / mismatched tensors


def test_planted_ulp_sparsity_is_exact_on_sharded_layout_with_tied_head(tmp_path, capsys):
    base = _decoder(0)
    base["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.linspace(1, 2, 8).astype(np.float32)
    tuned, planted = {}, {}
    for i, (name, x) in enumerate(base.items()):
        if x.dtype == BF:
            tuned[name], planted[name] = _bump(x, 0.25 if i % 2 else 0.6, seed=i)
    del tuned["lm_head.weight"], planted["lm_head.weight"]  # tied head: the tuned checkpoint does not store it
    tuned["model.layers.2.mlp.down_proj.weight"] = np.zeros((D, FF - 1), BF)  # shape mismatch
    del planted["model.layers.2.mlp.down_proj.weight"]
    tuned["model.extra_adapter.weight"] = np.zeros((4, 4), BF)
    bdir, tdir = tmp_path / "base", tmp_path / "tuned"
    write_sharded(bdir, [(n, a.shape, a.dtype) for n, a in base.items()], base.__getitem__, max_shard_bytes=40_000)
    assert len(list(bdir.glob("model-*-of-*.safetensors"))) >= 3
    save_safetensors(tdir / "model.safetensors", tuned)
    (tdir / "config.json").write_text(json.dumps({"tie_word_embeddings": True}))

    rc, err = _run(capsys, "pair", bdir, tdir, "--out", tmp_path / "out", "--rank", "8", "--allow-partial", figures=True)
    assert rc == 0, err
    out = tmp_path / "out"
    s = json.loads((out / "pair.json").read_text())
    sizes = {n: base[n].size for n in planted}
    assert s["params"] == sum(sizes.values())
    assert s["sparsity_bf16"] == 1 - sum(planted.values()) / sum(sizes.values())
    assert s["sparsity_bitwise"] == s["sparsity_bf16"] and s["rel_vs_bitwise"] == 0
    for n, c in planted.items():
        assert _record(s, n)["changed_bf16"] == c
    assert [m["name"] for m in s["missing"]] == ["model.layers.0.self_attn.rotary_emb.inv_freq", "lm_head.weight"]
    head = s["missing"][1]
    assert "tied" in head["note"] and "model.embed_tokens.weight" in head["note"]
    assert [m["name"] for m in s["extra"]] == ["model.extra_adapter.weight"]
    assert s["mismatched"] == [{"name": "model.layers.2.mlp.down_proj.weight", "base_shape": [D, FF], "tuned_shape": [D, FF - 1]}]
    assert s["rounded_from_f32"] == {"base": [], "tuned": []}
    rec = _record(s, "model.layers.1.mlp.up_proj.weight")
    for key in ("nss", "max_angle_deg", "gap_at_k", "principal_overlap", "low_mag_overlap", "alpha", "principal_energy",
                "energy_isotropic", "stable_rank_base", "stable_rank_tuned"):
        assert rec[key] is not None, key
    assert (rec["layer"], rec["kind"], rec["dtype"], rec["k"]) == (1, "up", "BF16", 8)
    assert rec["energy_isotropic"] == 64 / (FF * D)
    assert _record(s, "model.layers.1.input_layernorm.weight")["nss"] is None
    rows = (out / "pair.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(s["tensors"]) and rows[0].startswith("name,layer,kind,shape,dtype")
    md = (out / "pair.md").read_text()
    for fig in ("fig_sparsity_bf16.png", "fig_nss.png", "fig_max_angle_deg.png", "fig_principal_overlap.png",
                "fig_low_mag_overlap.png", "fig_principal_energy.png", "fig_stable_rank.png"):
        assert (out / fig).stat().st_size > 1000 and f"]({fig})" in md


def test_f32_stored_tuned_is_rounded_and_sub_half_ulp_moves_vanish(tmp_path, capsys):
    base = {k: v for k, v in _decoder(1, layers=1).items()}
    tuned, changed = {}, {}
    for i, (name, x) in enumerate(base.items()):
        rng = np.random.default_rng(100 + i)
        bumped, _ = _bump(x, 0.0, 0)
        order = rng.permutation(x.size)
        one, sub = order[: x.size // 10], order[x.size // 10: x.size // 10 + x.size // 2]
        bumped.reshape(-1).view(np.uint16)[one] += 1  # one ULP: visible
        y = bumped.astype(np.float32).reshape(-1)
        y[sub] += np.where(y[sub] < 0, -0.3, 0.3) * P.ulp_bf16(y[sub]).astype(np.float32)  # 0.3 ULP away from 0: rounds back
        tuned[name] = y.reshape(x.shape)
        changed[name] = one.size
        assert np.array_equal(P.to_bf16(tuned[name]).view(np.uint16), bumped.view(np.uint16))
    save_safetensors(tmp_path / "b.safetensors", base)
    save_safetensors(tmp_path / "t.safetensors", tuned)
    rc, err = _run(capsys, "pair", tmp_path / "b.safetensors", tmp_path / "t.safetensors", "--out", tmp_path / "o", "--rank", "4")
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "pair.json").read_text())
    assert s["sparsity_bf16"] == 1 - sum(changed.values()) / s["params"]
    assert sorted(s["rounded_from_f32"]["tuned"]) == sorted(base) and s["rounded_from_f32"]["base"] == []
    assert s["abs_only"] > 0 and s["sparsity_abs"] < s["sparsity_bf16"]  # the absolute probe counts the 0.3 ULP moves
    assert s["rel_vs_bitwise"] == 0
    rec = _record(s, "model.layers.0.mlp.up_proj.weight")
    assert (rec["dtype"], rec["rounded_to_bf16"]) == ("BF16/F32", "tuned")
    assert "tuned: " in (tmp_path / "o" / "pair.md").read_text()


def test_f16_pair_gets_its_own_fp16_sparsity_by_value(tmp_path, capsys):
    """An fp16 release: one-fp16-ULP moves (relative 2^-11 to 2^-10, below the 1e-3 probe and below bf16's half-ULP)
    count as changes in the fp16 sparsity and vanish from the bf16 one (both sides rounded to bf16 first)."""
    base = {k: v.astype(np.float32).astype(np.float16) for k, v in _decoder(2, layers=1).items()}
    tuned, changed = {}, 0
    for i, (name, x) in enumerate(base.items()):
        y = np.array(x, copy=True)
        idx = np.random.default_rng(200 + i).permutation(y.size)[: y.size // 5]
        y.reshape(-1).view(np.uint16)[idx] += 1  # one fp16 ULP away from 0 (or the next subnormal)
        tuned[name] = y
        changed += int(np.count_nonzero(P.changed_mask_fp16(x, y)))
    save_safetensors(tmp_path / "b.safetensors", base)
    save_safetensors(tmp_path / "t.safetensors", tuned)
    rc, err = _run(capsys, "pair", tmp_path / "b.safetensors", tmp_path / "t.safetensors", "--out", tmp_path / "o", "--rank", "4")
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "pair.json").read_text())
    assert all(r["sparsity_fp16"] is not None for r in s["tensors"])
    assert s["sparsity_fp16"] == pytest.approx(1 - changed / s["params"], abs=1e-12)
    assert s["sparsity_bf16"] > 0.9 > s["sparsity_fp16"]  # most one-fp16-ULP moves round back in bf16
    assert _record(s, "model.layers.0.mlp.up_proj.weight")["dtype"] == "F16"


def _low_rank_base(seed: int, m: int, n: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    L = (U * np.linspace(8.0, 4.0, k)) @ V.T * 0.1
    return (L + 0.02 * rng.standard_normal((m, n))).astype(np.float32).astype(BF)


def test_planted_principal_and_off_principal_updates_have_the_planted_sign(tmp_path, capsys):
    k, m, n = 4, FF, D
    W_in, W_out = _low_rank_base(1, m, n, k), _low_rank_base(2, m, n, k)
    w = W_in.astype(np.float64)
    u, s, vt = np.linalg.svd(w)
    inside = P.to_bf16(w + 0.01 * (u[:, :k] * s[:k]) @ vt[:k])  # inside the top-k subspace of W0
    w2 = W_out.astype(np.float64)
    u2, _, vt2 = np.linalg.svd(w2)
    G = np.random.default_rng(3).standard_normal(w2.shape)
    G -= u2[:, :k] @ (u2[:, :k].T @ G)
    G -= (G @ vt2[:k].T) @ vt2[:k]
    outside = P.to_bf16(w2 + 1e-4 * G)  # orthogonal to both top-k subspaces
    up, gate = "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.gate_proj.weight"
    save_safetensors(tmp_path / "b.safetensors", {up: W_in, gate: W_out})
    save_safetensors(tmp_path / "t.safetensors", {up: inside, gate: outside})
    rc, err = _run(capsys, "pair", tmp_path / "b.safetensors", tmp_path / "t.safetensors", "--out", tmp_path / "o", "--rank", str(k))
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "pair.json").read_text())
    a, b = _record(summary, up), _record(summary, gate)
    assert a["alpha"] == 0.5 and a["principal_overlap"] > 0.6
    assert a["principal_energy"] > 0.5 > 100 * a["energy_isotropic"]
    assert b["principal_overlap"] < 0.48 and b["low_mag_overlap"] > 0.55
    assert b["principal_energy"] < 0.5 * b["energy_isotropic"]
    # the streamed numbers are the theory functions' numbers
    for rec, W0, W1 in ((a, W_in, inside), (b, W_out, outside)):
        w0, w1 = W0.astype(np.float64), W1.astype(np.float64)
        ch = P.changed_mask_relative(W0, W1)
        with jax.enable_x64(True):
            assert rec["principal_overlap"] == pytest.approx(float(S.overlap(S.principal_mask(w0, k, 0.5), ch)), abs=2 / ch.sum())
            assert rec["low_mag_overlap"] == pytest.approx(float(S.overlap(S.low_magnitude_mask(w0, 0.5), ch)), rel=1e-6)
            assert rec["principal_energy"] == pytest.approx(float(S.principal_energy_fraction(w0, w1 - w0, k)), rel=1e-9)
            assert rec["nss"] == pytest.approx(float(S.normalized_spectral_shift(w0, w1)), rel=1e-9)
            au, av = map(np.asarray, S.principal_angles(w0, w1, k))
        assert rec["max_angle_u_deg"] == pytest.approx(np.degrees(float(np.max(au))), abs=1e-6)
        assert rec["max_angle_v_deg"] == pytest.approx(np.degrees(float(np.max(av))), abs=1e-6)
        assert rec["stable_rank_tuned"] == pytest.approx(np.sum(w1 * w1) / np.linalg.norm(w1, 2) ** 2, rel=1e-9)
        sv = np.linalg.svd(w0, compute_uv=False)
        assert rec["gap_at_k"] == pytest.approx(sv[k - 1] - sv[k], rel=1e-9)


# ----------------------------------------------------------------------------------------------
# truncated SVD route and streaming masks against the references


@pytest.mark.parametrize("m,n,k", [(300, 200, 16), (180, 400, 24), (40, 20, 20)])
def test_top_k_factors_match_full_svd(m, n, k):
    rng = np.random.default_rng(m + n)
    r = min(m, n)
    s_true = np.concatenate([np.linspace(10.0, 6.0, k), np.linspace(3.0, 0.1, r - k)])  # clear gap at k
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    W = ((U * s_true) @ V.T).astype(np.float32).astype(BF)  # a bf16 matrix, as read from a checkpoint
    s, Uk, Vk = LA.top_k_factors(W, k, chunk=4096)
    u, sv, vt = np.linalg.svd(W.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(s, sv, rtol=1e-10, atol=1e-12 * sv[0])
    for ref, got in ((u[:, :k], Uk), (vt[:k].T, Vk)):  # oracle: scipy's principal angles
        assert np.degrees(np.max(scipy.linalg.subspace_angles(ref, got))) < 1e-3
    np.testing.assert_allclose(Uk.T @ Uk, np.eye(k), atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_streamed_masks_equal_theory_masks_with_ties(transposed):
    rng = np.random.default_rng(7)
    W = (0.01 * rng.integers(-6, 7, (48, 40))).astype(np.float32).astype(BF)  # 13 distinct values: many ties
    Wa = W.T if transposed else W  # the analysed (out, in) matrix
    for alpha in (0.3, 0.5, 0.77):
        low = Sel.low_magnitude_mask_packed(W, alpha, transposed, chunk=64)
        ref = np.asarray(S.low_magnitude_mask(Wa.astype(np.float32), alpha))
        ref = ref.T if transposed else ref
        assert np.array_equal(np.unpackbits(low, count=W.size).astype(bool), ref.reshape(-1))
    s, U, V = LA.top_k_factors(W, 5)
    got = np.unpackbits(Sel.principal_mask_packed(U, s[:5], V, 0.5, transposed, chunk=64), count=W.size).astype(bool)
    ref = np.asarray(S.principal_mask_from_factors(V, s[:5], U, 0.5)).T if transposed else np.asarray(S.principal_mask_from_factors(U, s[:5], V, 0.5))
    assert got.sum() == ref.sum() == S.mask_count(W.size, 0.5)
    assert np.count_nonzero(got != ref.reshape(-1)) <= 2  # float32 scores computed by two libraries


# ----------------------------------------------------------------------------------------------
# several runs from one base (C3)


def test_pairs_jaccard_and_consensus(tmp_path, capsys):
    keep = ("model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight")
    base = {n: x for n, x in _decoder(4, layers=1).items() if n in keep}
    t1 = {n: _bump(x, 0.3, seed=i)[0] for i, (n, x) in enumerate(base.items())}
    t2 = {n: _bump(x, 0.6, seed=1000 + i)[0] for i, (n, x) in enumerate(base.items())}
    for name, d in (("b", base), ("t1", t1), ("t2", t2)):
        save_safetensors(tmp_path / f"{name}.safetensors", d)
    rc, err = _run(capsys, "pairs", *(tmp_path / f"{x}.safetensors" for x in ("b", "t1", "t2")),
                   "--out", tmp_path / "o", "--rank", "4", "--consensus", r"q_proj\.weight$", figures=True)
    assert rc == 0, err
    out = tmp_path / "o"
    c3 = json.loads((out / "pairs.json").read_text())
    assert len(c3["subfolders"]) == 2 and all((out / sub / "pair.json").exists() for sub in c3["subfolders"])
    name = "model.layers.0.self_attn.q_proj.weight"
    q = next(r for r in c3["tensors"] if r["name"] == name)
    m1 = P.changed_mask_relative(base[name], t1[name])
    m2 = P.changed_mask_relative(base[name], t2[name])
    assert q["densities"] == [m1.mean(), m2.mean()]
    with jax.enable_x64(True):
        assert q["jaccard"][0][1] == pytest.approx(float(S.jaccard(m1, m2)), rel=1e-6)
        assert q["baseline"][0][1] == pytest.approx(float(S.jaccard_random_baseline(m1.mean(), m2.mean())), rel=1e-12)
    assert q["mean_jaccard"] == q["jaccard"][0][1] and q["excess"] == pytest.approx(q["jaccard"][0][1] - q["baseline"][0][1])
    assert abs(q["excess"]) < 0.05  # independent masks sit at the baseline
    png = f"consensus_{name}.png"
    assert (out / png).stat().st_size > 1000 and png in (out / "pairs.md").read_text()
    grid, block = T.consensus_grid([np.packbits(m1), np.packbits(m2)], m1.shape, False, 1 << 12)
    assert block == (1.0, 1.0) and np.array_equal(grid, (m1.astype(float) + m2) / 2)


# ----------------------------------------------------------------------------------------------
# bad input: exit 2, one sentence naming the file / tensor, nothing written


def _lie_about_offsets(path, victim: str, onto: str) -> None:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8: 8 + n])
    header[victim]["data_offsets"] = header[onto]["data_offsets"]
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (n - len(new))
    assert len(new) == n
    path.write_bytes(raw[:8] + new + raw[8 + n:])


@pytest.mark.parametrize("case", ["missing", "not_safetensors", "truncated", "lying_header", "nan"])
def test_bad_input_exits_2_with_one_sentence_and_no_output(tmp_path, capsys, case):
    keep = ("model.layers.0.input_layernorm.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight")
    base = {n: x for n, x in _decoder(5, layers=1).items() if n in keep}
    tuned = {n: _bump(x, 0.2, seed=i)[0] for i, (n, x) in enumerate(base.items())}
    b, t = tmp_path / "b.safetensors", tmp_path / "t.safetensors"
    save_safetensors(b, base)
    save_safetensors(t, tuned)
    out = tmp_path / "out"
    rc, err = _run(capsys, "pair", b, t, "--out", out)  # an earlier good output must survive
    assert rc == 0, err
    before = (out / "pair.json").read_bytes()
    victim, needle = "model.layers.0.mlp.up_proj.weight", None
    if case == "missing":
        t = tmp_path / "absent.safetensors"
    elif case == "not_safetensors":
        t.write_text("this is a text file, not a checkpoint\n")
    elif case == "truncated":
        t.write_bytes(t.read_bytes()[:-1000])
        needle = "lm_head.weight"
    elif case == "lying_header":
        _lie_about_offsets(t, victim, "model.layers.0.mlp.gate_proj.weight")
        needle = victim
    else:
        bad = dict(tuned)
        bad[victim] = np.array(tuned[victim], copy=True)
        bad[victim][3, 5] = np.nan
        save_safetensors(t, bad)
        needle = victim
    rc, err = _run(capsys, "pair", b, t, "--out", out)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), err
    assert str(t) in lines[0]
    assert needle is None or f"`{needle}`" in lines[0]
    assert "Traceback" not in err
    assert (out / "pair.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
    rc, err = _run(capsys, "pair", b, t, "--out", tmp_path / "fresh")
    assert rc == 2 and not (tmp_path / "fresh").exists()


def test_nothing_matching_is_an_error(tmp_path, capsys):
    save_safetensors(tmp_path / "b.safetensors", {"a.weight": np.ones((2, 2), BF)})
    save_safetensors(tmp_path / "t.safetensors", {"b.weight": np.ones((2, 2), BF)})
    rc, err = _run(capsys, "pair", tmp_path / "b.safetensors", tmp_path / "t.safetensors", "--out", tmp_path / "o")
    assert rc == 2 and "No tensor" in err and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------
# a toy run's snapshots give the toy claims' numbers


@pytest.mark.slow
def test_toy_run_snapshots_give_the_toy_claims_numbers(session_runs, tmp_path, capsys):
    from toy_models.finetune import finetune, run_preset
    from toy_models.transformer import matrix_name, weight_matrices

    cfg = run_preset("grpo_kl", "tiny", ["base.train.steps=50", "train.max_steps=3", "train.eval_every=3",
                                         "train.eval_problems=8", "train.probe_size=8", "train.pool_per_task=16",
                                         "rl.prompts_per_step=2", "rl.num_generations=2", "train.precision=fp32_master"])
    run = finetune(cfg)
    snap0, snap1 = run.snapshot("base"), run.snapshot("final")  # released bf16 form
    save_safetensors(tmp_path / "base.safetensors", snap0)
    save_safetensors(tmp_path / "final.safetensors", snap1)
    rc, err = _run(capsys, "pair", tmp_path / "base.safetensors", tmp_path / "final.safetensors", "--out", tmp_path / "o", "--rank", "4")
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "pair.json").read_text())
    assert s["sparsity_bf16"] == P.checkpoint_sparsity(snap0, snap1, probe="relative")["overall"]
    m0, m1 = weight_matrices(snap0), weight_matrices(snap1)
    by_matrix = {matrix_name(r["name"]): r for r in s["tensors"] if matrix_name(r["name"]) in m0}
    assert set(by_matrix) == set(m0)
    with jax.enable_x64(True):  # the toy claims' function, in float64 so that the comparison is tight
        for name, rec in by_matrix.items():
            nss = float(S.normalized_spectral_shift(m0[name].astype(np.float64), m1[name].astype(np.float64)))
            assert rec["nss"] == pytest.approx(nss, rel=1e-7, abs=1e-12), name
    kernels = [r for r in s["tensors"] if r["name"].endswith(".kernel")]
    assert kernels and all(r["transposed"] for r in kernels)
    assert Checkpoint(tmp_path / "final.safetensors").tensors["blocks.0.attn.q.kernel"].dtype == "BF16"


@pytest.mark.slow
def test_toy_run_snapshots_give_the_null_function_s_overlaps(session_runs, tmp_path, capsys):
    """`pair` on a toy run's base and final snapshots gives, per matrix, the null-corrected overlaps of a direct
    call of ``theory.null.magnitude_null`` on those snapshots with the masks the toy claims compute
    (``theory.spectral``) and the generator ``null_rng(name)`` (what the toy claims will call, issue 20)."""
    from theory import null as NL
    from toy_models.finetune import finetune, run_preset

    cfg = run_preset("grpo_kl", "tiny", ["base.train.steps=50", "train.max_steps=3", "train.eval_every=3",
                                         "train.eval_problems=8", "train.probe_size=8", "train.pool_per_task=16",
                                         "rl.prompts_per_step=2", "rl.num_generations=2", "train.precision=fp32_master",
                                         "train.lr=3e-4"])
    run = finetune(cfg)
    snap0, snap1 = run.snapshot("base"), run.snapshot("final")
    save_safetensors(tmp_path / "base.safetensors", snap0)
    save_safetensors(tmp_path / "final.safetensors", snap1)
    k, alpha = 4, 0.5
    rc, err = _run(capsys, "pair", tmp_path / "base.safetensors", tmp_path / "final.safetensors", "--out", tmp_path / "o", "--rank", str(k))
    assert rc == 0, err
    s = json.loads((tmp_path / "o" / "pair.json").read_text())
    compared = 0
    for rec in s["tensors"]:
        name = rec["name"]
        if rec.get("principal_overlap") is None:
            continue
        w0, w1 = snap0[name], snap1[name]
        analysed = (w0.T if rec["transposed"] else w0).astype(np.float64)  # the claims' (out, in) matrix
        with jax.enable_x64(True):
            principal = np.asarray(S.principal_mask(analysed, k, alpha))
            low = np.asarray(S.low_magnitude_mask(analysed, alpha))
        if rec["transposed"]:
            principal, low = principal.T, low.T
        changed = P.changed_mask_relative(w0, w1)
        direct = NL.magnitude_null(w0, changed, {"principal": principal, "low_magnitude": low}, rng=NL.null_rng(name, 0))
        sU, U, V = LA.top_k_factors(w0, k)
        streamed = np.unpackbits(Sel.principal_mask_packed(U, sU[:k], V, alpha, rec["transposed"]), count=w0.size).reshape(w0.shape)
        same_mask = np.array_equal(streamed.astype(bool), principal)
        for region, key in (("principal", "principal_overlap"), ("low_magnitude", "low_mag_overlap")):
            d = direct.overlaps[region].summary()
            if region == "low_magnitude" or same_mask:  # equal masks: equal histograms, equal draws
                for suffix in ("null", "null_low", "null_high", "excess", "excess_low", "excess_high"):
                    assert rec[f"{key}_{suffix}"] == pytest.approx(d[suffix], rel=1e-12, abs=1e-15), (name, key, suffix)
                compared += 1
            else:  # float32 scores from two routes may swap an entry at the threshold
                assert rec[f"{key}_excess"] == pytest.approx(d["excess"], abs=3 / max(changed.sum(), 1)), (name, key)
    assert compared >= 10


def test_orthonormal_is_the_householder_q_with_positive_diagonal():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((500, 12)) * np.logspace(0, 3, 12)  # columns of very different norms
    Q, R = np.linalg.qr(B)
    Q *= np.sign(np.diag(R))
    np.testing.assert_allclose(LA.orthonormal(B.copy()), Q, atol=1e-12)
    B[:, 4] = 0.0  # rank deficient: Householder fallback, still orthonormal
    Q2 = LA.orthonormal(B.copy())
    np.testing.assert_allclose(Q2.T @ Q2, np.eye(12), atol=1e-12)
