"""Fine-tuning: advantages, losses, KL estimators, storage modes, determinism, resume, NaN guard, devices."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from theory.kl import kl_categorical, kl_estimate
from toy_models.config import ConfigError
from toy_models.finetune import TrainingDiverged, finetune, run_preset
from toy_models.rl import advantages, aggregate, clipped_surrogate
from toy_models.storage import after_update, stored_flat

rewards_groups = st.integers(1, 5).flatmap(
    lambda p: st.integers(2, 8).flatmap(
        lambda g: st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.5]), min_size=p * g, max_size=p * g).map(
            lambda xs: np.array(xs, np.float32).reshape(p, g))))


def test_advantages_hand_computed():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(advantages(r, "drgrpo"), [[0.5, -0.5, -0.5, 0.5]])
    np.testing.assert_allclose(advantages(r, "grpo"), [[0.5 / 0.5001, -0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001]], rtol=1e-6)
    # rloo: r_i - mean of the other three
    np.testing.assert_allclose(advantages(r, "rloo"), [[1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3]], rtol=1e-6)


@given(rewards_groups, st.floats(-3, 3))
def test_advantages_sum_to_zero_and_ignore_constant_shift(r, shift):
    for est in ("grpo", "drgrpo", "rloo"):
        a = np.asarray(advantages(jnp.asarray(r), est))
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a.sum(axis=1), 0.0, atol=1e-4)
        b = np.asarray(advantages(jnp.asarray(r + np.float32(shift)), est))
        np.testing.assert_allclose(a, b, atol=2e-3 if est == "grpo" else 1e-5)


def test_all_equal_group_gives_zero_advantage_without_nan():
    r = jnp.ones((3, 4))
    for est in ("grpo", "drgrpo", "rloo"):
        a = advantages(r, est)
        assert np.all(np.asarray(a) == 0.0)


def test_loss_aggregation_modes_hand_computed():
    loss = jnp.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    mask = jnp.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]], jnp.float32)
    # seq_mean: mean(2, 4, 1, 2) = 2.25
    assert float(aggregate(loss, mask, "seq_mean", 2)) == pytest.approx(2.25)
    # token_mean per group of 2: (1+2+3+4)/4 = 2.5 and (1+1+2)/3 = 4/3, mean = 1.9166
    assert float(aggregate(loss, mask, "token_mean", 2)) == pytest.approx((2.5 + 4 / 3) / 2)
    # global token mean: 14 / 7 = 2
    assert float(aggregate(loss, mask, "global_token_mean", 2)) == pytest.approx(2.0)
    # fixed_len (Dr.GRPO): 14 / (4 * 3)
    assert float(aggregate(loss, mask, "fixed_len", 2)) == pytest.approx(14 / 12)


def test_clipped_surrogate_hand_computed():
    lp_old = jnp.zeros((1, 3))
    lp_new = jnp.log(jnp.array([[1.5, 0.5, 1.1]]))
    loss, low, high = clipped_surrogate(lp_new, lp_old, jnp.array([1.0]), 0.2, 0.28)
    np.testing.assert_allclose(loss, [[-1.28, -0.5, -1.1]], rtol=1e-6)
    assert bool(high[0, 0]) and not bool(low.any())
    loss, low, high = clipped_surrogate(lp_new, lp_old, jnp.array([-1.0]), 0.2, 0.28)
    np.testing.assert_allclose(loss, [[1.5, 0.8, 1.1]], rtol=1e-6)
    assert bool(low[0, 1]) and not bool(high.any())
    # extreme log-ratios are clamped before exp: no inf
    loss, _, _ = clipped_surrogate(jnp.array([[500.0]]), jnp.array([[0.0]]), jnp.array([-1.0]), 0.2, 0.2)
    assert np.isfinite(np.asarray(loss)).all()


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_unbiased_estimators_match_exact_kl(kind):
    key = jax.random.key(0)
    logits_p = jax.random.normal(key, (7,))
    logits_q = logits_p + 0.7 * jax.random.normal(jax.random.key(1), (7,))
    lp, lq = jax.nn.log_softmax(logits_p), jax.nn.log_softmax(logits_q)
    y = jax.random.categorical(jax.random.key(2), lp, shape=(200_000,))
    est = float(jnp.mean(kl_estimate(lp[y], lq[y], kind)))
    exact = float(kl_categorical(lp, lq))
    assert est == pytest.approx(exact, rel=0.03)


def test_k2_is_second_order_accurate_for_close_policies():
    lp = jax.nn.log_softmax(jnp.array([0.1, 0.3, -0.2, 0.0]))
    lq = jax.nn.log_softmax(jnp.array([0.1, 0.3, -0.2, 0.0]) + 0.01 * jnp.array([1.0, -1.0, 0.5, 0.0]))
    exact = float(kl_categorical(lp, lq))
    k2 = float(jnp.sum(jnp.exp(lp) * kl_estimate(lp, lq, "k2")))
    assert k2 == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize(
    "override,field",
    [("rl.num_generations=1", "rl.num_generations"), ("rl.beta=-0.1", "rl.beta"), ("rl.epsilon=1.5", "rl.epsilon"),
     ("rl.epsilon=0", "rl.epsilon"), ("rl.loss_agg=mean", "rl.loss_agg"), ("train.precision=fp16", "train.precision"),
     ("train.lr=-1", "train.lr")],
)
def test_bad_options_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run_preset("grpo_kl", "tiny", [override])


def test_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="Unknown preset 'ppo'"):
        run_preset("ppo", "tiny")


def test_bf16_mode_keeps_values_on_the_bf16_grid():
    x = {"w": jnp.array([1.0 + 2.0**-9, 0.1, -3.3], jnp.float32)}
    y = after_update(x, "bf16")["w"]
    import ml_dtypes

    np.testing.assert_array_equal(np.asarray(y), np.asarray(np.asarray(x["w"]).astype(ml_dtypes.bfloat16).astype(np.float32)))
    assert after_update(x, "fp32")["w"] is x["w"]
    assert str(stored_flat({"w": np.asarray(y)}, "bf16")["w"].dtype) == "bfloat16"


FAST = ["train.max_steps=6", "train.eval_every=3", "train.eval_problems=8", "train.probe_size=8",
        "train.pool_per_task=32", "rl.prompts_per_step=4", "rl.num_generations=4", "train.checkpoint_every=2"]
TINY_BASE = ["base.train.steps=40", "base.corpus.n_examples=256", "base.train.eval_problems=8", "base.train.chunk=20"]


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path))
    return tmp_path


def _params_bytes(res, tag="final"):
    return (res.directory / "snapshots" / str(tag) / "params.safetensors").read_bytes()


@pytest.mark.slow  # end to end: a full run per preset (about 100 s of compiles and training cold)
@pytest.mark.parametrize("preset", ["grpo_kl", "dapo_clip", "sft"])
def test_one_run_per_preset_records_metrics_and_snapshots(runs, preset):
    cfg = run_preset(preset, "tiny", FAST + TINY_BASE + ["train.snapshot_steps=2,4"])
    res = finetune(cfg)
    recs = res.metrics()
    assert [r["step"] for r in recs] == list(range(0, 7))
    step = recs[1]
    for key in ("kl/step_exact", "kl/to_base_exact", "kl/step_exact_seq", "kl/fisher_quad_seq", "norm/update",
                "entropy/token_mean", "grad_norm/block0/attn/q", "update_norm/block0/fc_in"):
        assert key in step and np.isfinite(step[key]), key
    if cfg.train.method == "rl":
        for key in ("reward/mean", "clip/low_frac", "clip/high_frac", "kl/to_ref_exact", "kl/to_ref_k1",
                    "kl/to_ref_k2", "kl/to_ref_k3", "kl/clip_bound_seq"):
            assert key in step, key
    assert "heldout/mean" in recs[3] and "heldout/mean" in recs[0]
    assert sorted(res.snapshot_steps()) == ["2", "4", "base", "final"]
    assert res.snapshot("base")[next(iter(res.snapshot("base")))].dtype.name == "bfloat16"
    assert res.summary["stopped_at"] == 6
    # the run changed parameters
    b, f = res.snapshot("base"), res.snapshot("final")
    assert any(not np.array_equal(b[k], f[k]) for k in b)


@pytest.mark.slow  # end to end: three runs and a resume
def test_rl_is_deterministic_and_resume_is_bit_identical(runs, tmp_path, monkeypatch):
    cfg = run_preset("grpo_kl", "tiny", FAST + TINY_BASE)
    full = finetune(cfg)
    full_bytes, full_metrics = _params_bytes(full), full.metrics()
    again = finetune(cfg, force=True)
    assert _params_bytes(again) == full_bytes
    assert again.metrics() == full_metrics
    # interrupt after step 3 (segments end at 2, 3, 4, 6; the last checkpoint is at 2), resume, compare
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path / "resume"))
    part = finetune(cfg, stop_after=3)
    assert part.summary == {"interrupted_at": 3}
    resumed = finetune(cfg)
    assert _params_bytes(resumed) == full_bytes
    assert resumed.metrics() == full_metrics


@pytest.mark.slow  # end to end: a run that diverges
def test_nan_guard_names_the_step_and_leaves_no_run_folder(runs, monkeypatch):
    import toy_models.finetune as F
    import toy_models.segment as S

    real = S.STEP_FUNCTIONS["rl"]

    def poisoned(st, trainable, opt_state, data, keys, lr, probe_lp):
        out = real(st, trainable, opt_state, data, keys, lr, probe_lp)
        fifth = jnp.all(jax.random.key_data(keys[1]) == jax.random.key_data(jax.random.fold_in(jax.random.key(0), 4)))
        out.trainable = jax.tree.map(lambda x: jnp.where(fifth, jnp.nan, x), out.trainable)
        return out

    monkeypatch.setitem(S.STEP_FUNCTIONS, "rl", poisoned)
    cfg = run_preset("grpo_kl", "tiny", FAST + TINY_BASE + ["train.probe_size=7"])  # a shape no other test compiled
    with pytest.raises(TrainingDiverged, match="step 5"):
        finetune(cfg)
    directory = F.run_dir("rl", cfg)
    assert not directory.exists() and not directory.with_name(directory.name + ".partial").exists()
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith((".", "base-"))) == []


def test_target_gain_stops_early_and_records_where(runs):
    cfg = run_preset("sft", "tiny", FAST + TINY_BASE + ["train.max_steps=40", "train.target_gain=0.01", "train.eval_every=2", "train.lr=3e-3"])
    res = finetune(cfg)
    s = res.summary
    assert s["reason"] in ("target_gain", "max_steps")
    if s["reason"] == "target_gain":
        assert s["stopped_at"] < 40 and s["stopped_at"] % 2 == 0


MULTI = r"""
import os, sys, json
import numpy as np
os.environ["THREEGATE_RUNS"] = sys.argv[1]
from toy_models.finetune import run_preset, finetune
cfg = run_preset("grpo_kl", "tiny", sys.argv[3:] + ["train.devices=" + sys.argv[2]])
res = finetune(cfg)
recs = res.metrics()
f = res.snapshot("final")
print(json.dumps({"loss": [r.get("loss/policy") for r in recs[1:]],
                  "params": {k: np.asarray(v, np.float32).ravel()[:50].tolist() for k, v in f.items()}}))
"""


@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = {}
    args = FAST + TINY_BASE + ["train.precision=fp32"]
    for n in (1, 4):
        proc = subprocess.run([sys.executable, "-c", MULTI, str(tmp_path / f"d{n}"), str(n), *args],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out[4]["loss"], out[1]["loss"], rtol=1e-4, atol=1e-5)
    for k in out[1]["params"]:
        np.testing.assert_allclose(out[4]["params"][k], out[1]["params"][k], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", ["fp32", "bf16", "fp32_master"])
def test_compiled_segment_equals_the_step_loop(runs, mode):
    """Four steps as one compiled loop (toy_models.segment.train_segment) against the same body jitted alone and
    called four times: the float32 bits of the parameters agree in every storage mode, the change accumulator
    to float32 round-off."""
    import toy_models.finetune as F
    from toy_models.optim import init_opt_state
    from toy_models.segment import init_state, train_segment, train_step
    from toy_models.steps import probe_logp

    spec = run_preset("grpo_kl", "tiny", FAST + TINY_BASE + [f"train.precision={mode}"])
    setup = F.RunSetup(spec, F.pretrain(spec.base))
    st, lr = setup.statics, spec.train.hyper()
    fresh = lambda: init_state(setup.ref_params, init_opt_state(spec.train.optim(), setup.ref_params), setup.ref_params)  # noqa: E731
    seg, _, finite = train_segment(st, fresh(), setup.data, lr, setup.run_key, setup.data_key, jnp.int32(0), jnp.int32(4), 6)
    assert np.asarray(finite)[:4].all()
    loop = fresh()
    plp = probe_logp(st, loop.trainable, setup.data.probe)
    for t in range(4):
        loop, plp, _, ok = train_step(st, loop, plp, setup.data, lr, setup.run_key, setup.data_key, jnp.int32(t))
        assert bool(ok)
    for x, y in zip(jax.tree.leaves(seg.trainable), jax.tree.leaves(loop.trainable)):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint32), np.asarray(y).view(np.uint32), err_msg="params")
    # The regime accumulator is a running float32 sum of signed changes: on some CPUs (AVX-512 Xeon, measured
    # 2026-12-06) XLA fuses its add differently inside the loop than in the step jitted alone, which moved 1 of 32
    # entries by up to 5 ULPs of a sum with cancellation. The parameters above stay bit-identical; the accumulator
    # is held to 1e-6 of the summed absolute change of each entry (float32 round-off of 4 adds is below 5e-7).
    for x, y, a in zip(jax.tree.leaves(seg.change_sum), jax.tree.leaves(loop.change_sum), jax.tree.leaves(loop.abs_change_sum)):
        x, y, a = (np.asarray(v, np.float64) for v in (x, y, a))
        assert np.all(np.abs(x - y) <= 1e-6 * a + 1e-30), float(np.max(np.abs(x - y) / (a + 1e-30)))
    assert any(not np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(seg.trainable), jax.tree.leaves(setup.ref_params)))
