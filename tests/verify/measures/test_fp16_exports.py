"""Every sparsity measure that may see an fp16 export reads it by value (verify/measures/sparsity.py, masks.py):
a run stored as fp16_master gives the fp16 changed mask, never the bf16 probe's (which would round fp16 to bf16 and,
with eta = 1e-3, miss one-ULP fp16 changes)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from theory.precision import changed_mask_bitwise, changed_mask_fp16, to_bf16
from toy_models.storage import stored_view
from verify.measures.masks import changed
from verify.measures.sparsity import bf16_sparsity, export_sparsity
from verify.profiles import get_profile
from verify.runs import Context


class FakeRun:
    """A finished run's interface over hand-made master weights (base and final) stored under ``precision``."""

    def __init__(self, precision: str, base: dict, final: dict):
        self.spec = SimpleNamespace(train=SimpleNamespace(precision=precision))
        self.directory = Path(f"fake-{precision}")
        self._snaps = {"base": base, "final": final}

    def snapshot(self, step="final", master=False):
        flat = self._snaps[str(step)]
        return flat if master else stored_view(flat, self.spec.train.precision)


def _weights():
    rng = np.random.default_rng(0)
    base = {"blocks.0.attn.q.kernel": to_bf16(rng.normal(0, 0.1, (16, 16))).astype(np.float32),
            "blocks.0.ln1.scale": np.ones(16, np.float32)}
    drift = {k: rng.normal(0, 5e-5, v.shape).astype(np.float32) for k, v in base.items()}  # below most bf16 half-ULPs
    return base, {k: (v + drift[k]).astype(np.float32) for k, v in base.items()}


@pytest.mark.parametrize("precision", ["fp32_master", "fp16_master"])
def test_measures_read_the_runs_own_export(tmp_path, precision):
    base, final = _weights()
    run = FakeRun(precision, base, final)
    q0, q1 = base["blocks.0.attn.q.kernel"], final["blocks.0.attn.q.kernel"]
    truth = changed_mask_fp16(q0, q1) if precision == "fp16_master" else changed_mask_bitwise(q0, to_bf16(q1))
    got = changed(Context(get_profile("tiny"), tmp_path), run)["block0/attn/q"]
    np.testing.assert_array_equal(got, truth.T)  # weight_matrices reads kernels as (out, in)
    n = sum(v.size for v in base.values())
    ch16 = sum(int(np.count_nonzero(changed_mask_fp16(base[k], final[k]))) for k in base)
    ch_bf = sum(int(np.count_nonzero(changed_mask_bitwise(base[k], to_bf16(final[k])))) for k in base)
    assert bf16_sparsity(run) == pytest.approx(1 - (ch16 if precision == "fp16_master" else ch_bf) / n)
    # the same master weights through either export: the fp16 one is much denser at this sub-ULP drift
    assert export_sparsity(run, "fp16_master") == pytest.approx(1 - ch16 / n)
    assert export_sparsity(run, "fp32_master") == pytest.approx(1 - ch_bf / n)
    assert ch16 > 3 * ch_bf
