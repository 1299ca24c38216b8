"""Preference training (toy_models/preference.py): DPO and SimPO losses against hand-computed values, label
smoothing, pair checks, the implicit reward margin on a planted separable pair set, refusals, and one
end-to-end run per method on the tiny profile (slow)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toy_models.config import ConfigError
from toy_models.finetune import run_preset
from toy_models.optim import OptimSpec, hyperparameters, init_opt_state
from toy_models.pool import build_pool
from toy_models.preference import (PairSet, PreferenceConfig, PreferenceDataError, build_pairs, check_pairs, pair_set,
                                   preference_loss)
from toy_models.rl import RLConfig
from toy_models.steps import Probe, StepData, StepStatics
from toy_models.tasks import layout_lengths
from toy_models.transformer import ModelConfig, init_params


def softplus(x):
    return math.log1p(math.exp(x))


def loss_of(method, logp_c, logp_r, len_c, len_r, ref_c, ref_r, **pref):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    loss, stats = preference_loss(PreferenceConfig(**pref), method, f(logp_c), f(logp_r), f(len_c), f(len_r), f(ref_c), f(ref_r))
    return float(loss), {k: float(v) for k, v in stats.items()}


def test_dpo_loss_hand_computed():
    # pair 1: log-ratios chosen +1, rejected -1 -> h = 2; pair 2: chosen -0.5, rejected +1.5 -> h = -2
    loss, stats = loss_of("dpo", [-1.0, -2.5], [-3.0, -0.5], [2, 3], [2, 2], [-2.0, -2.0], [-2.0, -2.0], beta=0.1)
    # -log sigma(z) = softplus(-z): pair losses softplus(-0.2) and softplus(0.2)
    assert loss == pytest.approx((softplus(-0.2) + softplus(0.2)) / 2, rel=1e-6)
    assert stats["reward/chosen"] == pytest.approx((0.1 * 1.0 + 0.1 * -0.5) / 2, rel=1e-6)
    assert stats["reward/rejected"] == pytest.approx((0.1 * -1.0 + 0.1 * 1.5) / 2, rel=1e-6)
    assert stats["reward/margin"] == pytest.approx(0.0, abs=1e-7)
    assert stats["reward/accuracy"] == 0.5
    # beta defaults to 0.1 for DPO (TRL's DPOConfig)
    assert loss_of("dpo", [-1.0, -2.5], [-3.0, -0.5], [2, 3], [2, 2], [-2.0, -2.0], [-2.0, -2.0])[0] == pytest.approx(loss)


def test_dpo_reference_free_and_ipo_hand_computed():
    # reference_free: the reference log-probs are taken as 0, so h = logp_c - logp_r = 2
    loss, stats = loss_of("dpo", [-1.0], [-3.0], [2], [4], [-7.0], [-0.1], beta=0.5, reference_free=True)
    assert loss == pytest.approx(softplus(-1.0), rel=1e-6)
    assert stats["reward/chosen"] == pytest.approx(-0.5) and stats["reward/rejected"] == pytest.approx(-1.5)
    # ipo: length-averaged ratios (-1 - -2)/2 = 0.5 and (-3 - -2)/4 = -0.25, h = 0.75; (h - 1/(2 beta))^2 = (0.75 - 1)^2
    loss, _ = loss_of("dpo", [-1.0], [-3.0], [2], [4], [-2.0], [-2.0], beta=0.5, loss_type="ipo")
    assert loss == pytest.approx(0.0625, rel=1e-6)


def test_simpo_loss_hand_computed():
    # mean per-token log-probs -1 (chosen: -2 over 2 tokens) and -2 (rejected: -6 over 3); beta 2 -> rewards -2, -4;
    # z = 2 - gamma 0.5 = 1.5; the reference log-probs are never read
    loss, stats = loss_of("simpo", [-2.0], [-6.0], [2], [3], [-100.0], [5.0], beta=2.0, simpo_gamma=0.5)
    assert loss == pytest.approx(softplus(-1.5), rel=1e-6)
    assert stats["reward/chosen"] == pytest.approx(-2.0) and stats["reward/rejected"] == pytest.approx(-4.0)
    assert stats["reward/margin"] == pytest.approx(2.0) and stats["reward/accuracy"] == 1.0
    # beta defaults to 2.0 for SimPO (the SimPO paper), gamma to TRL's 0.5
    assert loss_of("simpo", [-2.0], [-6.0], [2], [3], [0.0], [0.0])[0] == pytest.approx(loss)


@pytest.mark.parametrize("method", ["dpo", "simpo"])
def test_label_smoothing_mixes_the_flipped_label_and_bounds_the_optimal_margin(method):
    """Conservative DPO / smoothed SimPO: loss = (1 - ls) L(z) + ls L(-z), so the loss is no longer minimised
    by an infinite margin: its derivative in z vanishes at sigma(z) = 1 - ls, z = log((1 - ls) / ls)."""
    ls, beta = 0.1, 1.0
    kw = dict(beta=beta, simpo_gamma=0.0) if method == "simpo" else dict(beta=beta)
    args = lambda z: ([z], [0.0], [1], [1], [0.0], [0.0])  # noqa: E731  margin z in the loss's units
    z = 1.3
    plain, smooth = loss_of(method, *args(z), **kw)[0], loss_of(method, *args(z), label_smoothing=ls, **kw)[0]
    assert smooth == pytest.approx((1 - ls) * softplus(-z) + ls * softplus(z), rel=1e-6)
    assert smooth > plain
    grad = jax.grad(lambda x: preference_loss(PreferenceConfig(label_smoothing=ls, **kw), method, x, jnp.zeros(1),
                                              jnp.ones(1), jnp.ones(1), jnp.zeros(1), jnp.zeros(1))[0])
    z_star = math.log((1 - ls) / ls)
    assert float(grad(jnp.array([z_star]))[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(grad(jnp.array([z_star - 1]))[0]) < 0 < float(grad(jnp.array([z_star + 1]))[0])
    # without smoothing the loss keeps pushing the margin up
    assert float(jax.grad(lambda x: preference_loss(PreferenceConfig(**kw), method, x, jnp.zeros(1), jnp.ones(1),
                                                    jnp.ones(1), jnp.zeros(1), jnp.zeros(1))[0])(jnp.array([z_star + 1]))[0]) < 0


@pytest.mark.parametrize("override,field", [
    ("pref.beta=-1", "pref.beta"), ("pref.label_smoothing=0.5", "pref.label_smoothing"),
    ("pref.loss_type=hinge", "pref.loss_type"), ("pref.simpo_gamma=-0.1", "pref.simpo_gamma"),
    ("pref.num_generations=1", "pref.num_generations"), ("pref.beta=abc", "pref.beta"), ("pref.gamma=1", "pref.gamma"),
])
def test_bad_preference_options_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        run_preset("dpo", "tiny", [override])


def test_options_a_method_does_not_have_are_refused():
    with pytest.raises(ConfigError, match=r"pref\.loss_type.*DPO loss"):
        run_preset("simpo", "tiny", ["pref.loss_type=ipo"])
    with pytest.raises(ConfigError, match=r"pref\.reference_free"):
        run_preset("simpo", "tiny", ["pref.reference_free=true"])
    with pytest.raises(ConfigError, match=r"pref\.label_smoothing"):
        run_preset("dpo", "tiny", ["pref.loss_type=ipo", "pref.label_smoothing=0.1"])
    spec = run_preset("dpo", "tiny", ["pref.loss_type=ipo", "pref.reference_free=true"])
    assert spec.pref.loss_type == "ipo" and spec.batch_sequences == 2 * spec.train.items_per_step


# ------------------------------------------------------------------------------------ planted pair sets

TASKS = ("add", "mod")
P_LEN, C_LEN = layout_lengths(TASKS, 1)
MCFG = ModelConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=P_LEN + C_LEN)


@pytest.fixture(scope="module")
def model():
    return init_params(MCFG, 0)


def planted(model, n=24, seed=0):
    """Pairs on real add/mod problems: chosen = the true answer, rejected = the answer with its first digit
    shifted by one (always a wrong answer)."""
    graphdef, params = model
    pool = build_pool(TASKS, 1, n // 2, P_LEN, C_LEN, seed)
    chosen = np.asarray(pool.answers_NA)  # answer tokens, EOS, PAD: the plain correct completion
    rejected = chosen.copy()
    rejected[:, 0] = 3 + (rejected[:, 0] - 3 + 1) % 10  # digit ids are 3..12
    return pair_set(graphdef, params, P_LEN, pool.prompts_NP, chosen, rejected, pool.answers_NA, pool.task_N, n)


def test_planted_pairs_pass_the_checks_and_bad_pairs_are_refused_naming_what_is_wrong(model):
    pairs = planted(model)
    check_pairs(pairs, P_LEN)
    replace = lambda **kw: PairSet(**{**pairs.__dict__, **kw})  # noqa: E731
    with pytest.raises(PreferenceDataError, match="empty"):
        check_pairs(replace(count=jnp.int32(0)), P_LEN)
    other = np.asarray(pairs.rejected_NL).copy()
    other[3, :P_LEN] = np.asarray(pairs.rejected_NL)[5, :P_LEN]  # pair 3's rejected answers pair 5's prompt
    with pytest.raises(PreferenceDataError, match="pair 3: its chosen and rejected completions answer different prompts"):
        check_pairs(replace(rejected_NL=jnp.asarray(other)), P_LEN)
    swapped = replace(chosen_NL=pairs.rejected_NL, rejected_NL=pairs.chosen_NL)
    with pytest.raises(PreferenceDataError, match="pair 0: its chosen completion does not verify"):
        check_pairs(swapped, P_LEN)
    both = replace(rejected_NL=pairs.chosen_NL)
    with pytest.raises(PreferenceDataError, match="pair 0: its rejected completion verifies as correct"):
        check_pairs(both, P_LEN)
    # rows past count are padding and are not checked
    check_pairs(replace(chosen_NL=jnp.asarray(np.where(np.arange(24)[:, None] < 20, np.asarray(pairs.chosen_NL),
                                                       np.asarray(pairs.rejected_NL))), count=jnp.int32(20)), P_LEN)


def test_too_few_pairs_are_refused_in_one_sentence(model):
    graphdef, params = model
    pool = build_pool(TASKS, 1, 8, P_LEN, C_LEN, 0)
    with pytest.raises(PreferenceDataError, match=r"preference pairs were built from 16 training prompts .*train\.batch_size"):
        build_pairs(graphdef, MCFG, params, pool, TASKS, PreferenceConfig(num_generations=2), P_LEN, C_LEN, 0, need=10_000)


@pytest.mark.parametrize("method", ["dpo", "simpo"])
def test_implicit_reward_margin_grows_on_a_planted_separable_pair_set(model, method):
    """Eight steps on 24 separable pairs (true against corrupted answers) from a random-init model: the
    reward margin and the accuracy rise, and the step logs every preference metric."""
    from toy_models.segment import init_state, train_step
    from toy_models.steps import probe_logp

    graphdef, params = model
    pairs = planted(model)
    pool = build_pool(TASKS, 1, 4, P_LEN, C_LEN, 0)
    st = StepStatics(graphdef, MCFG, method, RLConfig(), OptimSpec(), "fp32", P_LEN, C_LEN, 16, pref=PreferenceConfig())
    probe = Probe(pairs.chosen_NL[:8], pairs.chosen_mask_NC[:8], None)
    probe = Probe(probe.tokens_NL, probe.mask_NC, probe_logp(st, params, probe))
    data = StepData(pool, probe, params, pairs=pairs)
    state = init_state(params, init_opt_state(st.optim, params), params)
    plp = probe_logp(st, params, probe)
    hyper = hyperparameters(1e-2)
    margins, accs = [], []
    for t in range(8):
        state, plp, m, ok = train_step(st, state, plp, data, hyper, jax.random.key(1), jax.random.key(2), jnp.int32(t))
        assert bool(ok)
        margins.append(float(m["reward/margin"]))
        accs.append(float(m["reward/accuracy"]))
    for k in ("loss/preference", "reward/chosen", "reward/rejected", "logp/chosen", "kl/to_base_exact"):
        assert np.isfinite(float(m[k])), k
    assert margins[-1] > margins[0] + 0.1 * abs(margins[0]) + 0.05
    assert np.mean(accs[-3:]) > np.mean(accs[:3])
    assert float(m["kl/to_base_exact"]) > 0


# ----------------------------------------------------------------------------------------- end to end


@pytest.mark.slow  # end to end: pretraining the tiny-profile base, pair building and a 12-step run per method
@pytest.mark.parametrize("method", ["dpo", "simpo"])
def test_one_tiny_profile_run_per_method_stops_and_writes_its_summary(session_runs, method):
    from toy_models.finetune import finetune
    from verify.profiles import get_profile

    p = get_profile("tiny")
    spec = p.spec(method, 0)
    res = finetune(spec)
    s = res.summary
    assert spec.train.lr == p.rl_lr  # preference runs train at the profile's RL rate
    assert s["stopped_at"] == p.max_steps and s["reason"] == "max_steps"
    assert s["pairs"]["pairs"] >= spec.train.items_per_step
    assert s["pairs"]["pairs"] + s["pairs"]["dropped_all_correct"] + s["pairs"]["dropped_all_wrong"] == s["pairs"]["prompts"]
    for key in ("step_ratio", "drift_ratio", "sparsity_bf16_all", "sparsity_bf16_eligible"):
        assert np.isfinite(s["regime"][key]), key
    recs = res.metrics()
    assert [r["step"] for r in recs] == list(range(p.max_steps + 1))
    for key in ("loss/preference", "reward/margin", "reward/accuracy", "kl/to_base_exact", "kl/step_exact_seq"):
        assert all(np.isfinite(r[key]) for r in recs[1:]), key
    b, f = res.snapshot("base"), res.snapshot("final")
    assert any(not np.array_equal(b[k], f[k]) for k in b)
    again = finetune(spec, force=True)  # a pure function of its spec: pairs and training alike
    assert again.summary["pairs"] == s["pairs"] and again.metrics() == recs
