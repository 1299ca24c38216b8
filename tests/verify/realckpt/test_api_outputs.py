"""The analyzer's API, output folder, partial matches, self-pairs, sparsity-only mode, streaming and worker pool."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.verify.realckpt.helpers import BF, drift, gaussian, load, run, save_pair
from theory import precision as P
from verify.realckpt import analyze_pair, analyze_pairs
from verify.realckpt import stream as St
from verify.realckpt.analyze import analyze
from verify.realckpt.layout import save_safetensors
from verify.realckpt.options import Options
from verify.realckpt.staging import MANIFEST

UP, Q, NORM = "model.layers.{}.mlp.up_proj.weight", "model.layers.{}.self_attn.q_proj.weight", "model.layers.{}.input_layernorm.weight"


def _pair(tmp_path, layers: int = 2, seed: int = 0):
    base, tuned = {}, {}
    for i in range(layers):
        for name, shape in ((UP.format(i), (96, 48)), (Q.format(i), (48, 48)), (NORM.format(i), (48,))):
            base[name] = gaussian(seed + len(base), shape)
            tuned[name] = P.to_bf16(drift(base[name], 1e-4, 100 + len(tuned)))
    return save_pair(tmp_path, base, tuned)


def test_api_rows_are_the_cli_rows_and_the_summary_is_pair_json(tmp_path, capsys):
    b, t = _pair(tmp_path)
    rc, out, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--rank", "4", "--sweep", "4,16")
    assert rc == 0, err
    rows, summary = analyze_pair(b, t, rank=4, sweep=(4, 16))
    csv = pd.read_csv(tmp_path / "o" / "pair.csv")
    assert list(csv.columns) == list(rows.columns) and len(rows) == 6
    assert list(rows.columns[:6]) == ["name", "layer", "kind", "shape", "dtype", "size"]
    for col in ("sparsity_bf16", "principal_overlap_excess", "low_mag_overlap_null_high", "energy_ratio_k4", "nss", "dw_rank90"):
        np.testing.assert_allclose(csv[col].to_numpy(float), rows[col].to_numpy(float), rtol=1e-12, equal_nan=True)
    pj = load(tmp_path / "o")
    for key in ("sparsity_bf16", "params", "matched_share", "identical"):
        assert summary[key] == pj[key]
    assert summary["null"]["principal_overlap"]["excess"] == pytest.approx(pj["null"]["principal_overlap"]["excess"], rel=1e-12)
    assert summary["reading"] == pj["reading"] and summary["reading"][0] in out
    assert "tensors" not in summary


def test_analyze_pairs_api_returns_runs_rows(tmp_path):
    w0 = gaussian(1, (96, 48))
    paths = [tmp_path / "b.safetensors"]
    save_safetensors(paths[0], {UP.format(0): w0})
    for r in range(2):
        paths.append(tmp_path / f"t{r}.safetensors")
        save_safetensors(paths[-1], {UP.format(0): P.to_bf16(drift(w0, 1e-4, 10 + r))})
    res = analyze_pairs(paths[0], paths[1:], rank=4, sweep=(4,))
    assert len(res.pairs) == 2 and list(res.runs["name"]) == [UP.format(0)]
    assert res.runs["mean_jaccard_excess_low"][0] <= 0 <= res.runs["mean_jaccard_excess_high"][0]
    assert "1-2" in res.summary["jaccard"] and res.summary["reading"]
    with pytest.raises(ValueError, match="`tuned`"):
        analyze_pairs(paths[0], paths[1:2])


def test_out_folder_with_a_foreign_file_is_refused_and_left_untouched(tmp_path, capsys):
    b, t = _pair(tmp_path)
    out = tmp_path / "thesis"
    (out / "src").mkdir(parents=True)
    (out / "thesis.tex").write_text("my thesis\n")
    (out / "src" / "x.py").write_text("print(1)\n")
    (out / "pair.json").write_text("{}\n")  # an output of an older version: no manifest, so not ours either
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    rc, _, err = run(capsys, "pair", b, t, "--out", out)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and lines[0].endswith(".")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert (out / "thesis.tex").read_text() == "my thesis\n" and (out / "pair.json").read_text() == "{}\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".thesis")]


def test_rerun_replaces_only_its_own_files(tmp_path, capsys):
    b, t = _pair(tmp_path)
    out = tmp_path / "o"
    rc, _, err = run(capsys, "pair", b, t, "--out", out, "--rank", "4", figures=True)
    assert rc == 0, err
    assert (out / "fig_nss.png").exists() and "pair.json" in json.loads((out / MANIFEST).read_text())["files"]
    (out / "notes.txt").write_text("mine\n")
    rc, _, err = run(capsys, "pair", b, t, "--out", out, "--rank", "4")  # no figures this time
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine\n"
    assert not (out / "fig_nss.png").exists()  # an own file the new output does not write is removed
    assert json.loads((out / MANIFEST).read_text())["files"] == ["pair.csv", "pair.json", "pair.md"]
    (out / "pair.md").unlink()
    (out / "pair.md").write_text("my own report\n")  # still listed as ours: replaced on the next run
    rc, _, _ = run(capsys, "pair", b, t, "--out", out, "--rank", "4")
    assert rc == 0 and (out / "pair.md").read_text().startswith("# Checkpoint pair")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"].remove("pair.csv")  # a file the manifest does not list is not ours: refused
    (out / MANIFEST).write_text(json.dumps(manifest))
    rc, _, err = run(capsys, "pair", b, t, "--out", out, "--rank", "4")
    assert rc == 2 and "pair.csv" in err


def test_partial_match_by_name_warns_and_exits_3_unless_allowed(tmp_path, capsys):
    w = {f"model.layers.{i}.mlp.up_proj.weight": gaussian(i, (64, 32)) for i in range(8)}
    renamed = {f"transformer.h.{i}.mlp.c_fc.weight": v for i, v in enumerate(w.values())}
    renamed["model.layers.0.mlp.up_proj.weight"] = w["model.layers.0.mlp.up_proj.weight"]  # 1 of 8 (of 9 in tuned) matches
    b, t = save_pair(tmp_path, w, renamed)
    rc, out, err = run(capsys, "pair", b, t, "--out", tmp_path / "o")
    assert rc == 3 and "11.1 %" in err and "--allow-partial" in err and "WARNING" in out
    s = load(tmp_path / "o")
    assert s["partial"] is True and s["matched_share"] == pytest.approx(1 / 9)  # of the larger side (tuned: 9 tensors)
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--allow-partial")
    assert rc == 0, err


def test_self_pair_says_identical(tmp_path, capsys):
    b, _ = _pair(tmp_path)
    rc, out, err = run(capsys, "pair", b, b, "--out", tmp_path / "o", "--rank", "4")
    assert rc == 0, err
    s = load(tmp_path / "o")
    assert s["identical"] is True and s["sparsity_bf16"] == 1.0
    assert any(line.startswith("identical:") for line in s["reading"]) and "identical:" in out


def test_sparsity_only_mode_gives_the_same_sparsity_without_spectra(tmp_path, capsys):
    b, t = _pair(tmp_path)
    rows, summary = analyze_pair(b, t, rank=4, sweep=(4,))
    fast, fs = analyze_pair(b, t, sparsity_only=True)
    assert fs["sparsity_bf16"] == summary["sparsity_bf16"] and fs["sparsity_abs"] is None
    np.testing.assert_array_equal(fast["changed_bf16"], rows["changed_bf16"])
    assert "nss" not in fast.columns and "null" not in fs


def test_streamed_reading_equals_whole_reading(tmp_path, monkeypatch):
    base = {UP.format(0): gaussian(3, (200, 40)), UP.format(1): gaussian(4, (40, 200)),  # tall and wide
            NORM.format(0): gaussian(5, (40,))}
    tuned = {n: drift(w, 2e-4, 6 + i).astype(np.float32) for i, (n, w) in enumerate(base.items())}
    b, t = save_pair(tmp_path, base, tuned)
    opts = Options(rank=4, sweep=(4, 8), chunk=512)
    whole = analyze(b, [t], opts, workers=1).pairs[0].records
    monkeypatch.setattr(St, "WHOLE_BYTES", 0)
    streamed = analyze(b, [t], opts, workers=1).pairs[0].records
    for r0, r1 in zip(whole, streamed):
        for key, v in r0.items():
            if key == "seconds":
                continue
            if isinstance(v, float):
                assert r1[key] == pytest.approx(v, rel=1e-9, abs=1e-15), key
            else:
                assert r1[key] == v, key


def test_worker_pool_gives_the_same_records(tmp_path):
    b, t = _pair(tmp_path, layers=2)
    opts = Options(rank=4, sweep=(4,))
    one = analyze(b, [t], opts, workers=1).pairs[0]
    two = analyze(b, [t], opts, workers=2).pairs[0]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # noqa: E731
    assert strip(one.records) == strip(two.records)
    assert [n["principal"].summary() for n in one.nulls if "principal" in n] == \
           [n["principal"].summary() for n in two.nulls if "principal" in n]


def test_bad_worker_count_and_sweep_are_one_sentence(tmp_path, capsys):
    b, t = _pair(tmp_path, layers=1)
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--workers", "0")
    assert rc == 2 and "--workers" in err and not (tmp_path / "o").exists()
    rc, _, err = run(capsys, "pair", b, t, "--out", tmp_path / "o", "--sweep", "4,x")
    assert rc == 2 and "--sweep" in err


def test_bf16_values_read_through_bits_equal_the_dtype_cast():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32).astype(BF)
    np.testing.assert_array_equal(St.as_float64(x), x.astype(np.float64))


def test_bit_checks_equal_the_theory_probes_on_every_pattern():
    every = np.arange(0x10000, dtype=np.uint16)
    finite = (every & 0x7F80) != 0x7F80
    assert not St.not_finite_bits(every[finite])
    assert all(St.not_finite_bits(np.array([v, 0x3F80], np.uint16)) for v in every[~finite])
    rng = np.random.default_rng(1)
    vals = np.array([0.0, -0.0, 1.0, -1.0, 2.0**-130, -(2.0**-130), 3.0], np.float32).astype(BF)
    a, b = rng.choice(vals, 5000), rng.choice(vals, 5000)
    np.testing.assert_array_equal(St.changed_bits(a.view(np.uint16), b.view(np.uint16)), P.changed_mask_bitwise(a, b))
    f = rng.standard_normal(300).astype(np.float32)
    np.testing.assert_array_equal(St.to_bf16(f).view(np.uint16), P.to_bf16(f).view(np.uint16))
    np.testing.assert_array_equal(St.to_fp16(f).view(np.uint16), P.to_fp16(f).view(np.uint16))
