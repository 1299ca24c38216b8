"""control.random_base's decision rule (verify/claims/control.py) on hand-made numbers, every outcome reached: the
principal-overlap deficit beyond the magnitude null present on the pretrained base (floor) and absent on the random
init (equivalence)."""

import math

from verify.claims import control as C
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

PRESENT = [-0.04, -0.05, -0.045, -0.05, -0.04]  # pretrained: deficit beyond -0.01
ABSENT = [0.001, -0.002, 0.0, 0.002, -0.001]  # random init: inside +-0.01 (90 % interval)


def test_random_base_rule_reaches_every_outcome():
    status, present, absent = C.decide_random_base(PRESENT, ABSENT)
    assert (status, present.status, absent.status) == (REPRODUCED, REPRODUCED, REPRODUCED)
    # the deficit also on the random init (wholly outside the margin): not model-conditioned
    status, _, absent = C.decide_random_base(PRESENT, [-0.04, -0.05, -0.045, -0.05, -0.04])
    assert status == NOT_REPRODUCED and absent.status == NOT_REPRODUCED
    # no deficit on the pretrained base either (wholly above the -0.01 floor): nothing to vanish
    status, present, _ = C.decide_random_base(ABSENT, ABSENT)
    assert status == NOT_REPRODUCED and present.status == NOT_REPRODUCED
    # the random-init interval contains 0 but is too wide for the margin: not evidence of absence
    status, _, absent = C.decide_random_base(PRESENT, [-0.03, 0.04, 0.0, 0.02, -0.02])
    assert status == INCONCLUSIVE and absent.status == INCONCLUSIVE
    assert C.decide_random_base(PRESENT, [math.nan, math.nan])[0] == INCONCLUSIVE  # nothing changed on the random init
