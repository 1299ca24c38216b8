"""control.random_base's decision rule (verify/claims/control.py) on hand-made numbers, every outcome reached."""

import math

from verify.claims import control as C
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_vanishing_rule_reaches_every_outcome():
    assert C.decide_vanishes([-0.01, 0.02, 0.0]) == REPRODUCED  # the interval contains 0
    assert C.decide_vanishes([-0.05, -0.06, -0.055]) == NOT_REPRODUCED  # still below alpha
    assert C.decide_vanishes([0.05, 0.06, 0.055]) == INCONCLUSIVE  # above alpha: neither vanished nor the bias
    assert C.decide_vanishes([math.nan, math.nan]) == INCONCLUSIVE  # nothing changed
