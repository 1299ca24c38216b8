"""C12 frames (verify/measures/frames.py): an update planted in the original frame, carried through a
function-preserving edit, trained on the edited bf16 base and mapped back, changes exactly the planted
coordinates of the original base."""

import numpy as np
import pytest

from theory.precision import changed_mask_bitwise, to_bf16
from toy_models.interventions import EditConfig, apply_edit, edited_tensors
from verify.measures.frames import original_frame_changes


def _toy_flat(rng):
    d, ff = 4, 6
    shapes = {"blocks.0.attn.q.kernel": (d, d), "blocks.0.attn.k.kernel": (d, d), "blocks.0.attn.v.kernel": (d, d),
              "blocks.0.attn.o.kernel": (d, d), "blocks.0.fc_in.kernel": (d, ff), "blocks.0.fc_in.bias": (ff,),
              "blocks.0.fc_out.kernel": (ff, d)}
    return {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.parametrize("kind", ["rotate_vo", "permute_heads", "permute_mlp"])
def test_original_frame_changes_recover_a_planted_update(kind):
    """An update planted in the original frame, carried into the edited frame by the edit, trained 'on' the
    edited bf16 base and mapped back, changes exactly the planted coordinates of the original base."""
    rng = np.random.default_rng(3)
    flat = _toy_flat(rng)
    w0_orig = {k: to_bf16(v).astype(np.float32) for k, v in flat.items()}
    edited, record = apply_edit(flat, EditConfig(kind, layer=0, seed=5), n_heads=2)
    base_edit = {k: to_bf16(v).astype(np.float32) for k, v in edited.items()}
    support = {k: rng.random(v.shape) < 0.3 for k, v in flat.items()}
    d_orig = {k: np.where(support[k], 0.25 * np.abs(w0_orig[k]) + 0.05, 0.0) for k in flat}  # far above half a ULP
    d_edit, _ = apply_edit(d_orig, EditConfig(kind, layer=0, seed=5), n_heads=2)  # the same linear map moves updates
    final_master = {k: (base_edit[k].astype(np.float64) + d_edit[k]).astype(np.float32) for k in flat}
    back = original_frame_changes(base_edit, final_master, record, w0_orig)
    kernels = [k for k in flat if k.endswith("kernel")]
    assert sorted(back) == sorted(kernels)
    for k in kernels:
        expected = changed_mask_bitwise(w0_orig[k], to_bf16(w0_orig[k].astype(np.float64) + d_orig[k]))
        assert (expected == support[k]).all()
        assert (back[k] == expected).all(), k
    moved = [k for k in kernels if k in {t for t in edited_tensors(record)}]
    raw = {k: changed_mask_bitwise(base_edit[k], to_bf16(final_master[k])) for k in kernels}
    assert any((raw[k] != support[k]).any() for k in moved)  # in raw coordinates the planted set has moved
