"""`python -m toy_models` when training fails: a diverging run, an out-of-memory error and Ctrl-C each end in one
line (exit 1, 1, 130), no traceback, and leave no run folder, finished or partial, behind."""

import pytest

import toy_models.finetune as F
from toy_models.__main__ import main

ARGS = ["rl", "--base", "tiny", "--quiet"] + [f"--set={o}" for o in (
    "train.max_steps=6", "train.eval_every=3", "train.eval_problems=8", "train.probe_size=8", "train.pool_per_task=32",
    "rl.prompts_per_step=4", "rl.num_generations=4", "train.checkpoint_every=2", "base.train.steps=40",
    "base.corpus.n_examples=256", "base.train.eval_problems=8", "base.train.chunk=20")]


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEGATE_RUNS", str(tmp_path))
    return tmp_path


def _left(runs):
    """Run folders left in the cache but the base (finished before the run started)."""
    return sorted(p.name for p in runs.iterdir() if not p.name.startswith((".", "base-")))


@pytest.mark.slow  # trains a tiny base and a few steps
def test_a_diverging_run_says_so_in_one_line_and_leaves_nothing(runs, monkeypatch, capsys):
    real = F.train_segment

    def segment(*args):  # the segment of steps 5 and 6 reports its first step as not finite
        state, metrics, finite = real(*args)
        if int(args[6]) == 4:
            finite = finite.at[0].set(False)
        return state, metrics, finite

    monkeypatch.setattr(F, "train_segment", segment)
    assert main(ARGS) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Run rl-") and "NaN or infinite at step 5" in err[0], err
    assert _left(runs) == []


@pytest.mark.slow
@pytest.mark.parametrize("failure,status,first", [
    (KeyboardInterrupt(), 130, "interrupted: "),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2 TiB."), 1, "error: out of memory"),
])
def test_an_interrupted_or_out_of_memory_run_leaves_nothing(runs, monkeypatch, capsys, failure, status, first):
    real = F.train_segment
    calls = []

    def segment(*args):
        calls.append(1)
        if len(calls) == 3:  # after two segments and a checkpoint were written
            raise failure
        return real(*args)

    monkeypatch.setattr(F, "train_segment", segment)
    assert main(ARGS) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(first), err
    assert _left(runs) == []
