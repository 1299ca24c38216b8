"""Update masks from the base weights (claim C14) and the masked optimizer's bitwise freeze."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from theory.spectral import low_magnitude_mask, mask_count, principal_mask
from toy_models.config import ConfigError
from toy_models.masks import (
    MaskConfig,
    build_masks,
    check_mask_fits,
    is_block_matrix,
    mask_density,
    masked_optimizer,
    masks_tree,
)
from toy_models.storage import MODES, after_update, round_tree_bf16
from toy_models.transformer import ModelConfig, flat_params, init_params, matrix_name, unflatten_params, weight_matrices

KINDS = ("none", "principal", "non_principal", "low_magnitude", "safe", "random")
BLOCK_NAMES = {f"blocks.0.{s}.kernel" for s in ("attn.q", "attn.k", "attn.v", "attn.o", "fc_in", "fc_out")}


@pytest.fixture(scope="module")
def base():
    graphdef, params = init_params(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=24), 0)
    params = round_tree_bf16(params)
    return params, flat_params(params)


@pytest.fixture(scope="module")
def masks(base):
    _, flat = base
    return {kind: build_masks(flat, MaskConfig(kind)) for kind in KINDS}


def test_block_matrices_are_the_q_k_v_o_and_mlp_kernels(base):
    _, flat = base
    assert {n for n in flat if is_block_matrix(n)} == BLOCK_NAMES


def test_masks_cover_every_tensor_as_bool(base, masks):
    _, flat = base
    for kind, m in masks.items():
        assert set(m) == set(flat)
        for name, mask in m.items():
            assert mask.dtype == bool and mask.shape == flat[name].shape, (kind, name)


def test_densities_are_exact(base, masks):
    _, flat = base
    cfg = MaskConfig()
    for name in flat:
        n = flat[name].size
        if is_block_matrix(name):
            assert masks["principal"][name].sum() == mask_count(n, cfg.alpha)
            assert masks["non_principal"][name].sum() == n - mask_count(n, cfg.alpha)
            assert masks["low_magnitude"][name].sum() == mask_count(n, cfg.low_alpha)
        else:  # other='train' by default
            for kind in KINDS:
                assert masks[kind][name].all(), (kind, name)
        assert masks["none"][name].all()


def test_principal_and_non_principal_are_complements(masks):
    for name in BLOCK_NAMES:
        np.testing.assert_array_equal(masks["non_principal"][name], ~masks["principal"][name])


def test_safe_is_the_union(masks):
    for name in BLOCK_NAMES:
        union = masks["non_principal"][name] | masks["low_magnitude"][name]
        np.testing.assert_array_equal(masks["safe"][name], union)
        assert masks["safe"][name].sum() > masks["non_principal"][name].sum()


def test_random_matches_safe_density_per_matrix(base, masks):
    _, flat = base
    for name in BLOCK_NAMES:
        assert masks["random"][name].sum() == masks["safe"][name].sum()
        assert not np.array_equal(masks["random"][name], masks["safe"][name])
    again = build_masks(flat, MaskConfig("random"))
    other_seed = build_masks(flat, MaskConfig("random", seed=1))
    for name in BLOCK_NAMES:
        np.testing.assert_array_equal(again[name], masks["random"][name])
        assert not np.array_equal(other_seed[name], masks["random"][name])


def test_masks_agree_with_the_analysis_frame(base, masks):
    """Kernel-frame masks are the transposes of the theory masks on weight_matrices (ties included)."""
    _, flat = base
    mats = weight_matrices(flat)
    cfg = MaskConfig()
    for name in BLOCK_NAMES:
        W = mats[matrix_name(name)]
        np.testing.assert_array_equal(masks["principal"][name].T, np.asarray(principal_mask(W, cfg.k, cfg.alpha)))
        np.testing.assert_array_equal(masks["low_magnitude"][name].T, np.asarray(low_magnitude_mask(W, cfg.low_alpha)))


def test_principal_orientation_on_a_planted_matrix(base):
    """A rank-1 spike on output units 0..7 makes those units principal: kernel columns 0..7, not rows."""
    _, flat = base
    rng = np.random.default_rng(0)
    u = np.zeros(32)
    u[:8] = rng.uniform(1, 2, 8)
    v = rng.uniform(1, 2, 32)
    W_out_in = 10 * np.outer(u, v) + 0.01 * rng.standard_normal((32, 32))
    planted = dict(flat, **{"blocks.0.attn.q.kernel": W_out_in.T.astype(np.float32)})
    mask = build_masks(planted, MaskConfig("principal", k=1, alpha=0.25))["blocks.0.attn.q.kernel"]
    assert mask[:, :8].all() and not mask[:, 8:].any()


def test_other_tensors_frozen_on_request(base):
    _, flat = base
    m = build_masks(flat, MaskConfig("safe", other="freeze"))
    for name in flat:
        assert m[name].any() if is_block_matrix(name) else not m[name].any(), name
    assert all(v.all() for v in build_masks(flat, MaskConfig("none", other="freeze")).values())


def test_mask_density(base, masks):
    _, flat = base
    d = mask_density(masks["principal"])
    total = sum(v.size for v in flat.values())
    block = sum(flat[n].size for n in BLOCK_NAMES)
    assert d["block_matrices"] == pytest.approx(0.5)
    assert d["overall"] == pytest.approx((total - block + block // 2) / total)
    assert d["per_tensor"]["blocks.0.attn.q.kernel"] == 0.5 and d["per_tensor"]["embed.embedding"] == 1.0
    assert mask_density(masks["none"])["overall"] == 1.0


# ------------------------------------------------------------------------------------------------
# the masked optimizer keeps frozen coordinates bit for bit


def _train(params, opt, mode: str, steps: int = 3):
    """A few AdamW steps on a linear dummy loss with a dense random gradient, then the storage rule."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    direction = jax.tree.unflatten(treedef, [jnp.asarray(rng.standard_normal(x.shape), jnp.float32) for x in leaves])

    def loss(p):
        return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(direction)))

    @jax.jit
    def step(p, state):
        updates, state = opt.update(jax.grad(loss)(p), state, p)
        return after_update(optax.apply_updates(p, updates), mode), state

    state = opt.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return flat_params(params)


def _with_negative_zeros(params, flat, masks):
    """Put -0.0 on a few frozen entries: the one value a plain "update * 0" would flip (to +0.0)."""
    planted = {k: v.copy() for k, v in flat.items()}
    for name in BLOCK_NAMES:
        frozen = np.flatnonzero(~masks[name])[:5]
        planted[name].reshape(-1)[frozen] = -0.0
    return unflatten_params(params, planted), planted


@pytest.mark.parametrize("mode", MODES)
def test_masked_coordinates_never_change(base, masks, mode):
    params, flat = base
    m = masks["principal"]
    params, flat = _with_negative_zeros(params, flat, m)
    opt = masked_optimizer(optax.adamw(1e-2, weight_decay=0.1), masks_tree(params, m))
    after = _train(params, opt, mode)
    n_free = n_free_changed = 0
    for name, W0 in flat.items():
        changed = after[name].view(np.uint32) != W0.view(np.uint32)
        assert not changed[~m[name]].any(), f"{name}: frozen entries changed in mode {mode}"
        n_free += m[name].sum()
        n_free_changed += changed[m[name]].sum()
    assert n_free_changed / n_free > 0.99


def test_without_the_mask_frozen_coordinates_move(base, masks):
    """Negative control: plain AdamW moves the would-be frozen entries (the check above can fail)."""
    params, flat = base
    m = masks["principal"]
    after = _train(params, optax.adamw(1e-2, weight_decay=0.1), "bf16")
    moved = sum((after[n].view(np.uint32) != flat[n].view(np.uint32))[~m[n]].sum() for n in BLOCK_NAMES)
    assert moved > 0.9 * sum((~m[n]).sum() for n in BLOCK_NAMES)


def test_weight_decay_alone_is_masked(base, masks):
    """Zero gradient: only AdamW's decoupled weight decay moves weights, and only trainable ones."""
    params, flat = base
    m = masks["safe"]
    opt = masked_optimizer(optax.adamw(1e-1, weight_decay=0.5), masks_tree(params, m))

    @jax.jit
    def decay_step(p):
        updates, _ = opt.update(jax.tree.map(jnp.zeros_like, p), opt.init(p), p)
        return optax.apply_updates(p, updates)

    new = flat_params(decay_step(params))
    q = "blocks.0.attn.q.kernel"
    changed = new[q].view(np.uint32) != flat[q].view(np.uint32)
    assert not changed[~m[q]].any()
    assert changed[m[q] & (flat[q] != 0)].all()


@pytest.mark.parametrize("kwargs,field", [
    (dict(kind="dense"), "mask.kind"),
    (dict(k=0), "mask.k"),
    (dict(k=2.0), "mask.k"),
    (dict(alpha=0.0), "mask.alpha"),
    (dict(alpha=1.5), "mask.alpha"),
    (dict(low_alpha=float("nan")), "mask.low_alpha"),
    (dict(low_alpha=1.0), "mask.low_alpha"),
    (dict(seed=-1), "mask.seed"),
    (dict(other="drop"), "mask.other"),
])
def test_bad_mask_config(kwargs, field):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        MaskConfig(**kwargs)


def test_k_must_fit_every_matrix(base):
    _, flat = base
    with pytest.raises(ConfigError, match="`mask.k`"):
        build_masks(flat, MaskConfig("principal", k=33))
    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=24)
    with pytest.raises(ConfigError, match="`mask.k`"):
        check_mask_fits(MaskConfig("safe", k=33), model)
    check_mask_fits(MaskConfig("safe", k=32), model)
    check_mask_fits(MaskConfig("low_magnitude", k=99), model)  # k plays no part there


@pytest.mark.parametrize("value", [1.0, float("nan")])
def test_frozen_entries_survive_any_inner_update(base, masks, value):
    """Whatever the inner optimizer returns (a positive number, NaN), frozen entries keep their bits,
    -0.0 included: a plain "update * mask" would turn -0.0 + (+0.0) into +0.0 and NaN * 0 into NaN."""
    params, flat = base
    m = masks["principal"]
    params, flat = _with_negative_zeros(params, flat, m)
    constant = optax.GradientTransformation(
        lambda p: optax.EmptyState(), lambda u, s, p=None: (jax.tree.map(lambda x: jnp.full_like(x, value), u), s))
    opt = masked_optimizer(constant, masks_tree(params, m))

    @jax.jit
    def step(p):
        updates, _ = opt.update(p, opt.init(p), p)
        return optax.apply_updates(p, updates)

    new = flat_params(step(params))
    for name in BLOCK_NAMES:
        np.testing.assert_array_equal(new[name].view(np.uint32)[~m[name]], flat[name].view(np.uint32)[~m[name]])
    assert any(np.signbit(flat[n][~m[n]]).any() and (flat[n][~m[n]] == 0).any() for n in BLOCK_NAMES)
