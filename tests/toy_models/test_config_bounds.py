"""Bad values are refused up front in one sentence naming the field: learning rates and sizes outside the
bounds the config docstrings state, a batch field the method ignores; and `python -m toy_models` says so in
one line with exit status 2, before anything trains."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toy_models.config import ConfigError, apply_overrides
from toy_models.finetune import run_preset
from toy_models.pretrain import preset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("override,field", [
    ("train.lr=0", "train.lr"), ("train.lr=1.5", "train.lr"), ("train.lr=1e10", "train.lr"), ("train.lr=nan", "train.lr"),
    ("train.lr=inf", "train.lr"),
    ("rl.prompts_per_step=1000000", "rl.prompts_per_step"), ("rl.num_generations=5000", "rl.num_generations"),
    ("train.eval_problems=100000", "train.eval_problems"), ("train.pool_per_task=10000000", "train.pool_per_task"),
    ("train.probe_size=100000", "train.probe_size"), ("train.max_steps=0", "train.max_steps"),
    ("train.batch_size=32", "train.batch_size"),  # RL's batch is prompts_per_step x num_generations
    ("base.model.d_model=100000", "model.d_model"), ("base.model.n_layers=1000", "model.n_layers"),
    ("base.corpus.n_examples=100000000", "corpus.n_examples"), ("base.train.lr=2", "train.lr"),
    ("base.train.batch_size=100000", "train.batch_size"),
])
def test_out_of_bounds_values_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=r"Field `" + field.replace(".", r"\.") + "`"):
        run_preset("grpo_kl", "tiny", [override])


def test_batch_size_belongs_to_sft_only():
    assert run_preset("grpo_kl", "tiny").train.batch_size is None
    sft = run_preset("sft", "tiny")
    assert sft.train.batch_size is None and sft.batch_sequences == 64  # unset means the default of 64
    assert run_preset("sft", "tiny", ["train.batch_size=32"]).batch_sequences == 32
    with pytest.raises(ConfigError, match=r"train\.batch_size.*not used by method sft_onpolicy"):
        run_preset("sft_onpolicy", "tiny", ["train.batch_size=32"])
    spec = run_preset("grpo_kl", "tiny", ["rl.prompts_per_step=4", "rl.num_generations=4"])
    assert spec.batch_sequences == 16


def test_values_inside_the_bounds_are_accepted():
    run_preset("grpo_kl", "tiny", ["train.lr=1", "rl.prompts_per_step=2048", "rl.num_generations=8"])
    apply_overrides(preset("tiny"), ["train.lr=1", "train.steps=0"])


@pytest.mark.parametrize("args,field", [
    (["rl", "--base", "tiny", "--set", "train.lr=1e10"], "train.lr"),
    (["rl", "--base", "tiny", "--set", "rl.prompts_per_step=1000000"], "rl.prompts_per_step"),
    (["rl", "--base", "tiny", "--set", "train.batch_size=32"], "train.batch_size"),
])
def test_the_command_line_refuses_in_one_line_before_training(tmp_path, args, field):
    proc = subprocess.run([sys.executable, "-m", "toy_models", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "THREEGATE_RUNS": str(tmp_path)})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Field `" + field + "`"), proc.stderr
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
