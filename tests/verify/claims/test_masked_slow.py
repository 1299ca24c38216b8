"""Case studies, slow part: a real masked RL run (masked.rl, claim C14) on the tiny base keeps every masked
coordinate's float32 master bits equal to the base's while the trainable ones move."""

import numpy as np
import pytest

from toy_models.finetune import finetune
from verify.experiments.cases import masked_spec
from verify.measures.training import frozen_changes
from verify.profiles import get_profile

pytestmark = pytest.mark.slow


def test_masked_coordinates_never_change_in_a_real_run(session_runs):
    """A real masked RL run on the tiny base: the float32 master bits of every masked coordinate equal the base's,
    while trainable coordinates moved."""
    spec = masked_spec(get_profile("tiny"), 0, "safe")
    run = finetune(spec)
    bad, frozen = frozen_changes(run)
    assert frozen > 0 and bad == 0
    base, final = run.snapshot("base", master=True), run.snapshot("final", master=True)
    moved = sum(int(np.count_nonzero(base[k].view(np.uint32) != final[k].view(np.uint32))) for k in base)
    assert moved > 0
