"""Held-out pass rates: sample completions at a temperature and score them with the task verifiers; pass@k
from several samples per problem (the headroom of a base: a high pass@k with a low pass@1 means RL can sharpen
what the base already samples)."""

from __future__ import annotations

from math import comb

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.sampling import sample
from toy_models.tasks import Problem, decode, encode_prompt, get_task, make_problems

EVAL_SEED_OFFSET = 1_000_003  # held-out problems come from a seed stream disjoint from training seeds


def heldout_problems(task_names, n: int, size: int, seed: int) -> dict[str, list[Problem]]:
    """The fixed held-out problem set of each task for a run seed."""
    return {t: make_problems(t, n, size, EVAL_SEED_OFFSET + 97 * seed + i) for i, t in enumerate(task_names)}


def prompts_array(problems: list[Problem], prompt_len: int) -> jnp.ndarray:
    """Left-padded prompt regions of a problem list, shape (n, prompt_len)."""
    return jnp.asarray(np.stack([encode_prompt(p.prompt, prompt_len) for p in problems]))


def score(task_name: str, problems: list[Problem], tokens_BC) -> np.ndarray:
    """1.0 where the sampled completion verifies, else 0.0."""
    task = get_task(task_name)
    toks = np.asarray(tokens_BC)
    return np.array([float(task.verify(p, decode(t))) for p, t in zip(problems, toks)], dtype=np.float32)


def pass_rates(graphdef, params, cfg, problems_by_task, prompt_len: int, completion_len: int, key,
               temperature: float = 1.0) -> dict[str, float]:
    """Mean verified pass rate of each task's held-out problems, one sample per problem."""
    out = {}
    for i, (name, problems) in enumerate(problems_by_task.items()):
        toks, _, _ = sample(graphdef, params, prompts_array(problems, prompt_len), jax.random.fold_in(key, i),
                            cfg=cfg, completion_len=completion_len, temperature=temperature)
        out[name] = float(score(name, problems, toks).mean())
    return out


PASS_AT_K = (1, 8)  # the k of every base's recorded pass@k
PASS_SAMPLES = 16  # samples per problem from which pass@k is estimated


def pass_at_k_estimate(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k of one problem from ``n`` samples of which ``correct`` verified (Chen et al. 2021):
    1 - C(n - c, k) / C(n, k), the chance that k samples drawn without replacement hold a correct one."""
    if not 1 <= k <= n or not 0 <= correct <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= correct <= n, got n={n}, correct={correct}, k={k}.")
    return 1.0 - comb(n - correct, k) / comb(n, k)


def pass_at_k(graphdef, params, cfg, problems_by_task, prompt_len: int, completion_len: int, key,
              ks=PASS_AT_K, n: int = PASS_SAMPLES, temperature: float = 1.0) -> dict[str, dict[int, float]]:
    """{task: {k: mean over its problems of the unbiased pass@k}} from ``n`` samples per problem at
    ``temperature`` (every k must be at most n)."""
    out = {}
    for i, (name, problems) in enumerate(problems_by_task.items()):
        prompts = jnp.repeat(prompts_array(problems, prompt_len), n, axis=0)
        toks, _, _ = sample(graphdef, params, prompts, jax.random.fold_in(key, i), cfg=cfg,
                            completion_len=completion_len, temperature=temperature)
        correct = score(name, [p for p in problems for _ in range(n)], toks).reshape(len(problems), n).sum(1)
        out[name] = {k: float(np.mean([pass_at_k_estimate(n, int(c), k) for c in correct])) for k in ks}
    return out
