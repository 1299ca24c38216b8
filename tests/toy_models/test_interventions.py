"""Function-preserving edits of one block (claim C12): preservation, inverses, update and mask maps.

Tolerance. The edits change the order of float32 sums (and a rotation changes the numbers), so
logits agree to round-off only: we allow |logits_edit - logits_orig| <= 1e-5 * max(1, max |logits|)
(measured: at most 9.3e-6 absolute on logits of size about 9, i.e. 1e-6 relative, both position kinds).
"""

import numpy as np
import jax
import pytest

from theory.precision import changed_mask_bitwise, to_bf16
from toy_models.config import ConfigError
from toy_models.interventions import (
    EditConfig,
    apply_edit,
    check_edit_fits,
    edited_tensors,
    haar_orthogonal,
    invert_params,
    map_mask_back,
    map_update_back,
    random_derangement,
)
from toy_models.transformer import ModelConfig, apply, flat_params, init_params, unflatten_params

N_HEADS = 4
EDITS = ("rotate_vo", "permute_heads", "permute_mlp")
REL_TOL = 1e-5


class Model:
    """A 2-layer, 4-head model with every parameter perturbed (non-zero biases, uneven norms)."""

    def __init__(self, positions: str):
        self.cfg = ModelConfig(d_model=32, n_layers=2, n_heads=N_HEADS, d_ff=64, max_len=24, positions=positions)
        self.graphdef, self.template = init_params(self.cfg, 0)
        rng = np.random.default_rng(1)
        self.flat = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32)
                     for k, v in flat_params(self.template).items()}
        B, T = 4, 20
        self.start_B = np.array([0, 1, 3, 5], np.int32)
        toks = rng.integers(1, self.cfg.vocab_size, (B, T))
        toks[np.arange(T)[None, :] < self.start_B[:, None]] = 0
        self.tokens_BT = toks.astype(np.int32)
        self._fn = jax.jit(lambda params, t, s: apply(self.graphdef, params, t, s)[0])

    def logits(self, flat):
        return np.asarray(self._fn(unflatten_params(self.template, flat), self.tokens_BT, self.start_B))


@pytest.fixture(scope="module", params=["learned", "rope"])
def model(request):
    return Model(request.param)


def _assert_same_function(model, flat_a, flat_b):
    a, b = model.logits(flat_a), model.logits(flat_b)
    err = np.abs(a - b).max()
    assert err <= REL_TOL * max(1.0, np.abs(a).max()), f"logits differ by {err}"


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("kind", EDITS)
def test_edit_preserves_the_function(model, kind, layer):
    edited, _ = apply_edit(model.flat, EditConfig(kind, layer, seed=3), N_HEADS)
    _assert_same_function(model, model.flat, edited)


def test_a_broken_edit_is_caught(model):
    """Negative control: rotating V alone (no compensating O) changes the logits far beyond tolerance."""
    edited, _ = apply_edit(model.flat, EditConfig("rotate_vo", 0, seed=3), N_HEADS)
    broken = dict(model.flat, **{"blocks.0.attn.v.kernel": edited["blocks.0.attn.v.kernel"]})
    a, b = model.logits(model.flat), model.logits(broken)
    assert np.abs(a - b).max() > 100 * REL_TOL * np.abs(a).max()


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("kind", EDITS)
def test_edit_touches_exactly_the_tensors_it_names(model, kind, layer):
    before = {k: v.copy() for k, v in model.flat.items()}
    edited, record = apply_edit(model.flat, EditConfig(kind, layer, seed=3), N_HEADS)
    touched = set(edited_tensors(record))
    assert touched and all(n.startswith(f"blocks.{layer}.") for n in touched)
    assert set(edited) == set(model.flat)
    for name in model.flat:
        assert np.array_equal(model.flat[name].view(np.uint32), before[name].view(np.uint32)), "input was mutated"
        same = np.array_equal(edited[name].view(np.uint32), model.flat[name].view(np.uint32))
        assert same == (name not in touched), name


def test_head_permutation_moves_every_head(model):
    edited, record = apply_edit(model.flat, EditConfig("permute_heads", 1, seed=5), N_HEADS)
    assert sorted(record.perm) == list(range(N_HEADS)) and all(p != j for j, p in enumerate(record.perm))
    dh = model.cfg.d_model // N_HEADS
    for s in "qkv":
        W, We = model.flat[f"blocks.1.attn.{s}.kernel"], edited[f"blocks.1.attn.{s}.kernel"]
        for j, p in enumerate(record.perm):
            np.testing.assert_array_equal(We[:, j * dh:(j + 1) * dh], W[:, p * dh:(p + 1) * dh])
    O, Oe = model.flat["blocks.1.attn.o.kernel"], edited["blocks.1.attn.o.kernel"]
    for j, p in enumerate(record.perm):
        np.testing.assert_array_equal(Oe[j * dh:(j + 1) * dh], O[p * dh:(p + 1) * dh])


def test_rotation_is_per_head_orthogonal(model):
    edited, record = apply_edit(model.flat, EditConfig("rotate_vo", 0, seed=2), N_HEADS)
    dh = model.cfg.d_model // N_HEADS
    assert record.rotation_HDD.shape == (N_HEADS, dh, dh)
    for R in record.rotation_HDD:
        np.testing.assert_allclose(R.T @ R, np.eye(dh), atol=1e-12)
    V, Ve = model.flat["blocks.0.attn.v.kernel"], edited["blocks.0.attn.v.kernel"]
    for h, R in enumerate(record.rotation_HDD):
        cols = slice(h * dh, (h + 1) * dh)
        np.testing.assert_allclose(Ve[:, cols], V[:, cols].astype(np.float64) @ R, atol=1e-6)


@pytest.mark.parametrize("kind", EDITS)
def test_inverse_recovers_the_original(model, kind):
    """Bitwise for permutations; for rotations within 1e-6 of each tensor's largest entry (measured 4e-8)."""
    edited, record = apply_edit(model.flat, EditConfig(kind, 1, seed=7), N_HEADS)
    back = invert_params(edited, record)
    for name, W in model.flat.items():
        if kind == "rotate_vo":
            assert np.abs(back[name] - W).max() <= 1e-6 * np.abs(W).max(), name
            assert back[name].dtype == W.dtype
        else:
            np.testing.assert_array_equal(back[name].view(np.uint32), W.view(np.uint32))


@pytest.mark.parametrize("kind", EDITS)
def test_update_maps_back_to_the_same_function(model, kind):
    """Edited model at W_e + dW computes what the original computes at W + map_update_back(dW)."""
    edited, record = apply_edit(model.flat, EditConfig(kind, 0, seed=4), N_HEADS)
    rng = np.random.default_rng(9)
    dW = {k: (0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in edited.items()}
    back = map_update_back(dW, record)
    _assert_same_function(model, {k: edited[k] + dW[k] for k in edited}, {k: model.flat[k] + back[k] for k in edited})
    # and the update really matters: the unmapped update gives another function on the edited tensors
    wrong = {k: model.flat[k] + dW[k] for k in edited}
    a, b = model.logits({k: edited[k] + dW[k] for k in edited}), model.logits(wrong)
    assert np.abs(a - b).max() > 100 * REL_TOL * np.abs(a).max()


@pytest.mark.parametrize("kind", ["permute_heads", "permute_mlp"])
def test_permutation_maps_are_exact(model, kind):
    edited, record = apply_edit(model.flat, EditConfig(kind, 1, seed=4), N_HEADS)
    rng = np.random.default_rng(3)
    dW = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.flat.items()}
    forward, _ = apply_edit(dW, EditConfig(kind, 1, seed=4), N_HEADS)
    for name, value in map_update_back(forward, record).items():
        np.testing.assert_array_equal(value.view(np.uint32), dW[name].view(np.uint32))


@pytest.mark.parametrize("kind", ["none", "permute_heads", "permute_mlp"])
def test_mask_maps_back_by_index(model, kind):
    """Label every entry; a mask in the edited frame must map to the original positions of the same labels."""
    labels = {k: np.arange(v.size, dtype=np.float32).reshape(v.shape) for k, v in model.flat.items()}
    edited_labels, record = apply_edit(labels, EditConfig(kind, 1, seed=6), N_HEADS)
    rng = np.random.default_rng(5)
    mask_e = {k: rng.random(v.shape) < 0.3 for k, v in model.flat.items()}
    mask_o = map_mask_back(mask_e, record)
    for name in labels:
        assert mask_o[name].dtype == bool and mask_o[name].shape == labels[name].shape
        np.testing.assert_array_equal(np.sort(labels[name][mask_o[name]]), np.sort(edited_labels[name][mask_e[name]]))


@pytest.mark.parametrize("kind", ["permute_heads", "permute_mlp"])
def test_changed_masks_map_back_exactly_after_bf16(model, kind):
    """The analysis use: bf16 changed masks measured in the edited frame equal those of the mapped-back update."""
    W0 = {k: to_bf16(v) for k, v in model.flat.items()}
    W0_e, record = apply_edit(W0, EditConfig(kind, 0, seed=8), N_HEADS)
    rng = np.random.default_rng(2)
    dW = {k: (3e-3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in W0.items()}
    changed_e = {k: changed_mask_bitwise(W0_e[k], to_bf16(W0_e[k] + dW[k])) for k in W0}
    back = map_update_back(dW, record)
    changed_o = {k: changed_mask_bitwise(W0[k], to_bf16(W0[k] + back[k])) for k in W0}
    for name, mask in map_mask_back(changed_e, record).items():
        assert 0 < mask.mean() < 1, name
        np.testing.assert_array_equal(mask, changed_o[name])


def test_rotation_masks_cannot_be_mapped(model):
    _, record = apply_edit(model.flat, EditConfig("rotate_vo", 0), N_HEADS)
    with pytest.raises(ValueError, match="map_update_back"):
        map_mask_back({k: np.ones(v.shape, bool) for k, v in model.flat.items()}, record)


def test_none_edit_is_the_identity(model):
    edited, record = apply_edit(model.flat, EditConfig("none"), N_HEADS)
    assert edited_tensors(record) == []
    for name, W in model.flat.items():
        np.testing.assert_array_equal(edited[name].view(np.uint32), W.view(np.uint32))
        assert edited[name] is not W


def test_edits_are_seeded(model):
    _, ra = apply_edit(model.flat, EditConfig("rotate_vo", 0, seed=1), N_HEADS)
    _, rb = apply_edit(model.flat, EditConfig("rotate_vo", 0, seed=1), N_HEADS)
    _, rc = apply_edit(model.flat, EditConfig("rotate_vo", 0, seed=2), N_HEADS)
    np.testing.assert_array_equal(ra.rotation_HDD, rb.rotation_HDD)
    assert not np.allclose(ra.rotation_HDD, rc.rotation_HDD)
    _, pa = apply_edit(model.flat, EditConfig("permute_mlp", 0, seed=1), N_HEADS)
    _, pb = apply_edit(model.flat, EditConfig("permute_mlp", 0, seed=2), N_HEADS)
    assert pa.perm != pb.perm


def test_haar_sign_fix():
    """Haar on O(3): E[Q_00] = 0 and both determinants occur. Raw LAPACK QR gives Q_00 >= 0 always."""
    rng = np.random.default_rng(0)
    Qs = np.stack([haar_orthogonal(3, rng) for _ in range(2000)])
    np.testing.assert_allclose(np.einsum("nij,nik->njk", Qs, Qs), np.broadcast_to(np.eye(3), Qs.shape), atol=1e-12)
    assert abs(Qs[:, 0, 0].mean()) < 0.05  # std of the mean is about 0.013
    dets = np.linalg.det(Qs)
    assert 0.4 < (dets > 0).mean() < 0.6


def test_derangement():
    rng = np.random.default_rng(0)
    assert random_derangement(2, rng) == (1, 0)
    for n in (3, 5, 64):
        p = random_derangement(n, rng)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    with pytest.raises(ValueError, match="`n`"):
        random_derangement(1, rng)


@pytest.mark.parametrize("kwargs,field", [
    (dict(kind="rotate"), "edit.kind"),
    (dict(kind="rotate_vo", layer=-1), "edit.layer"),
    (dict(kind="rotate_vo", layer=1.5), "edit.layer"),
    (dict(kind="rotate_vo", seed=-2), "edit.seed"),
])
def test_bad_edit_config(kwargs, field):
    with pytest.raises(ConfigError, match=f"`{field}`"):
        EditConfig(**kwargs)


def test_edit_must_fit_the_model(model):
    with pytest.raises(ConfigError, match="`edit.layer`"):
        apply_edit(model.flat, EditConfig("permute_mlp", layer=2), N_HEADS)
    with pytest.raises(ConfigError, match="`edit.kind`"):
        apply_edit(model.flat, EditConfig("permute_heads", layer=0), 1)
    with pytest.raises(ConfigError, match="`edit.layer`"):
        check_edit_fits(EditConfig("rotate_vo", layer=2), model.cfg)
    with pytest.raises(ConfigError, match="`edit.kind`"):
        check_edit_fits(EditConfig("permute_heads"), ModelConfig(d_model=8, n_heads=1))
    check_edit_fits(EditConfig("permute_heads", layer=1), model.cfg)
    check_edit_fits(EditConfig("none", layer=9), model.cfg)  # 'none' ignores the layer
