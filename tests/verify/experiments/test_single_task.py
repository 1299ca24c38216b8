"""The single-task run set (verify/experiments/single_task.py): every role trains and is evaluated on one task, with
as many training prompts and held-out problems as the all-task runs, the profile's rates, matched stops where the
rules say, and snapshots of the equal-size SFT run at every evaluation."""

import pytest

from verify.experiments.single_task import TASK, eval_every, single_task
from verify.profiles import PROFILES, get_profile
from verify.runsets import leaves


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_role_is_on_one_task_with_the_all_task_pool_and_held_out_set(name):
    p = get_profile(name)
    runs = single_task(p)
    n = len(p.base.corpus.tasks)
    assert runs.task == TASK and runs.seeds == p.seeds
    for s in leaves(runs):
        assert s.tasks == (TASK,) and s.train.eval_every == eval_every(p)
        assert s.train.eval_problems == n * p.eval_problems and s.train.pool_per_task == n * p.pool_per_task
    methods = {role: {s.train.method for s in specs} for role, specs in runs.matched.items()}
    assert methods == {"rl": {"rl"}, "sft": {"sft"}, "sft_onpolicy": {"sft_onpolicy"}, "dpo": {"dpo"},
                       "simpo": {"simpo"}, "placebo: rl at the sft rate": {"rl"}}
    for specs in runs.matched.values():
        assert all(s.train.target_gain == p.target_gain for s in specs)
    assert {s.train.lr for s in runs.rl + runs.dpo + runs.simpo + runs.sft_size} == {p.rl_lr}
    assert {s.train.lr for s in runs.sft + runs.sft_onpolicy + runs.placebo} == {p.sft_lr}


def test_equal_size_run_and_evaluation_interval():
    p = get_profile("quick")
    assert eval_every(p) == 2 and eval_every(get_profile("tiny")) == 1
    size = single_task(p).sft_size[0]
    assert size.train.target_gain is None and size.train.max_steps == p.equal_size_steps
    assert size.train.snapshot_steps == tuple(range(2, p.equal_size_steps + 1, 2))
    assert len(leaves(single_task(p))) == 7 * len(p.seeds)
