"""Planted controls of the forgetting claims: parameters that forget the untrained tasks by construction, and
synthetic runs whose forgetting is a monotone function of one predictor only."""

from __future__ import annotations

import numpy as np

from toy_models.tasks import encode, make_problems

EMBEDDING = "embed.embedding"  # the input embedding table (untied from the unembedding)
SAMPLE_PROBLEMS = 256  # problems per task read to find the characters a task uses


def task_characters(task: str, size: int) -> set[str]:
    """Every character of the prompts, answers and scratchpads of ``SAMPLE_PROBLEMS`` problems of ``task``."""
    return {c for p in make_problems(task, SAMPLE_PROBLEMS, size, 0) for c in p.prompt + p.answer + p.scratchpad}


def private_tokens(tasks, trained, size: int) -> list[int]:
    """Token ids that only the untrained tasks of ``tasks`` use (none of the ``trained`` tasks' characters)."""
    chars = {t: task_characters(t, size) for t in tasks}
    kept = set().union(*(chars[t] for t in trained))
    others = set().union(*(chars[t] for t in tasks if t not in trained)) - kept
    return sorted(encode("".join(sorted(others))))


def planted_forgetting(flat: dict, tokens, seed: int) -> dict:
    """``flat`` with the input embeddings of ``tokens`` replaced by Gaussian vectors of the table's RMS: prompts of the
    tasks that use them become unreadable, every computation on other tokens is unchanged (the positive control of
    forgetting.rl_vs_sft)."""
    emb = np.asarray(flat[EMBEDDING], np.float32).copy()
    rms = float(np.sqrt(np.mean(emb ** 2)))
    emb[tokens] = np.random.default_rng(seed).normal(0.0, rms, (len(tokens), emb.shape[1])).astype(np.float32)
    return {**flat, EMBEDDING: emb}


def planted_predictors(n: int, seed: int, names) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` synthetic runs: (forgetting, {predictor: values}) where forgetting rises monotonically with the first of
    ``names`` (up to small noise) and the others are independent of it (the positive control of forgetting.predictor)."""
    rng = np.random.default_rng(seed)
    forget = rng.uniform(0.0, 0.2, n)
    first = np.exp(20 * forget + rng.normal(0.0, 0.1, n))
    return forget, {names[0]: first, **{name: rng.lognormal(0.0, 1.0, n) for name in names[1:]}}
