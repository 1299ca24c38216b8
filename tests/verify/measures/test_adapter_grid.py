"""Readouts of the adapter grid (verify/measures/training.py, adapter_grid.py): collapse and its onset from the
held-out gain, the training reward and divergence; steps to a target gain; the best rate of an arm; the order
of "how soon" an arm collapses."""

import numpy as np

from verify.measures.adapter_grid import best_lr, collapse_key, first_collapse
from verify.measures.training import collapse_point, steps_to_target


def test_collapse_point_nan_heldout_and_reward():
    steps = [10, 20, 30, 40]
    assert collapse_point(steps, [0.05, 0.1, 0.12, 0.15]) == (False, None, "")
    # transient dip below the margin then recovery: not a collapse
    assert collapse_point(steps, [0.05, -0.2, 0.0, 0.02])[0] is False
    # ends below: onset is the first evaluation from which it stays below
    assert collapse_point(steps, [0.05, -0.15, -0.11, -0.2]) == (True, 20, "held-out")
    assert collapse_point(steps, [-0.15, 0.0, -0.11, -0.2]) == (True, 30, "held-out")
    assert collapse_point(steps, [-0.15, -0.2, -0.11, -0.2]) == (True, 10, "held-out")
    # divergence wins when it is earliest
    assert collapse_point(steps[:2], [0.05, -0.3], diverged_at=15) == (True, 15, "NaN")
    # reward windows of 5 steps against the base accuracy 0.4: windows 0.4, 0.25, 0.45, 0.2, 0.1 -> onset end of window 4
    rewards = np.repeat([0.4, 0.25, 0.45, 0.2, 0.1], 5)
    assert collapse_point([25], [0.0], rewards, window=5, base_acc=0.4) == (True, 20, "reward")
    assert collapse_point([25], [0.0], rewards[:15], window=5, base_acc=0.4)[0] is False
    assert collapse_point([25], [0.0], rewards, window=5)[0] is False  # no base accuracy: the reward test is off
    # an incomplete last window is ignored
    assert collapse_point([25], [0.0], np.r_[np.full(10, 0.4), [0.0, 0.0]], window=5, base_acc=0.4)[0] is False


def test_steps_to_target_and_best_lr():
    assert steps_to_target([10, 20, 30], [0.02, 0.11, 0.09], 0.1) == 20
    assert steps_to_target([10, 20], [0.02, 0.05], 0.1) is None
    assert best_lr({1e-3: [0.1, 0.2], 1e-2: [0.3, 0.2], 1e-1: [-0.2, float("nan")]}) == 1e-2
    assert best_lr({1e-3: [0.2], 1e-2: [0.2]}) == 1e-3  # ties: the smaller rate
    assert best_lr({1e-3: [float("nan")], 1e-2: [0.0]}) == 1e-2


def test_first_collapse_and_key_order():
    assert first_collapse([1e-3, 1e-2, 1e-1], [False, True, True], [None, 50, 20]) == (1e-2, 50)
    assert first_collapse([1e-3, 1e-2], [False, False], [None, None]) == (None, None)
    assert collapse_key(1e-2, 50) < collapse_key(3e-2, 10) < collapse_key(3e-2, 20) < collapse_key(None, None)
