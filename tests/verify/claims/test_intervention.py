"""geometry.intervention's decision rules (verify/claims/intervention.py, C12) on hand-made numbers and on planted
masks, every outcome reached."""

import numpy as np

from verify.claims import intervention as ci
from verify.controls.masks import planted_edit
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_intervention_rule_reaches_every_outcome():
    assert ci.decide_intervention([0.001, -0.002, 0.0], [0.05, 0.055, 0.06], 0.05, 0.055)[0] == REPRODUCED
    assert ci.decide_intervention([0.05, 0.045, 0.05], [0.05, 0.055, 0.06], 0.05, 0.055)[0] == NOT_REPRODUCED
    assert ci.decide_intervention([0.0, 0.0, 0.0], [0.01, 0.012, 0.011], 0.05, 0.055)[0] == NOT_REPRODUCED  # drops everywhere
    assert ci.decide_intervention([0.0, 0.0], [0.0, 0.0], 0.001, 0.001)[0] == INCONCLUSIVE  # nothing to lose
    assert ci.decide_intervention([0.0, 0.03, 0.0], [0.05, 0.055, 0.06], 0.05, 0.055)[0] == INCONCLUSIVE  # wide interval


def test_the_claim_needs_both_decisive_edits():
    assert ci.decide_edits([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert ci.decide_edits([REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert ci.decide_edits([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE


def test_the_negative_planted_control_never_reads_reproduced():
    """A preferred set left in place keeps the edited matrices' overlap: the rule reads NOT REPRODUCED. (The planted
    positive control, moved away, compares one run with three references, so its interval over 3 pairs is wide:
    on synthetic strata it often reads INCONCLUSIVE; the end-to-end test checks it on the real matrices.)"""
    from verify.measures.masks import ulp_strata

    shapes = {"attn/q": (32, 32), "attn/k": (32, 32), "attn/v": (32, 32), "attn/o": (32, 32), "fc_in": (64, 32)}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        strata = {f"block0/{n}": ulp_strata(rng.normal(0, 0.1, s)) for n, s in shapes.items()}
        e, u, ref_e, ref_u = planted_edit(strata, ["block0/attn/v", "block0/attn/o"], 52, moved=False)
        assert ci.decide_intervention(e, u, ref_e, ref_u)[0] == NOT_REPRODUCED
