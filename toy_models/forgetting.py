"""Forgetting: what fine-tuning on some of the base's tasks costs on the others and on the pretraining data.

Pure functions of parameters (and of a finished run's snapshots), deterministic:

- ``task_pass_rates``: held-out pass rate of every task the base knows, with the sampler, verifier and
  fixed evaluation key of a run's own evaluation (``toy_models.steps.heldout_accuracy``), so the base and
  the tuned parameters are scored on the same problems with the same random numbers;
- ``corpus_cross_entropy``: token cross-entropy on a held-out slice of the pretraining corpus: the
  ``n`` examples that follow the corpus the base was trained on in its own seeded stream
  (``toy_models.pretrain.build_corpus`` run ``n`` examples further), never seen in pretraining but drawn
  from the same mixture, with the same noisy answers;
- ``forgetting_between`` and ``run_forgetting``: both measures for the base and the tuned parameters, the
  change per task, the forgetting on the tasks the run did not train on (mean drop of their pass rates)
  and the change in corpus cross-entropy. An unchanged model forgets exactly 0.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.lm import token_logprobs
from toy_models.pool import build_pool
from toy_models.pretrain import BaseConfig, CorpusConfig, build_corpus
from toy_models.steps import heldout_accuracy
from toy_models.transformer import init_params, unflatten_params

CE_CHUNK = 512  # corpus rows per forward pass (a fixed shape: one compile)
EVAL_KEY_OFFSET = 11  # the evaluation key of a run of seed s is key(s + 11) (toy_models.finetune)


def task_pass_rates(graphdef, mcfg, params, tasks, size: int, n_per_task: int, prompt_len: int,
                    completion_len: int, seed: int) -> dict[str, float]:
    """Held-out pass rate of each of ``tasks`` at temperature 1, one sample per problem: the held-out
    problems and the fixed evaluation key of a run of ``seed``."""
    h = build_pool(tasks, size, n_per_task, prompt_len, completion_len, seed, heldout=True)
    acc = heldout_accuracy(graphdef, mcfg, completion_len, len(tasks), params, h.prompts_NP, h.answers_NA, h.task_N,
                           jax.random.key(seed + EVAL_KEY_OFFSET))
    return {t: float(a) for t, a in zip(tasks, np.asarray(acc))}


@lru_cache(maxsize=4)
def heldout_corpus(corpus: CorpusConfig, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_NL, loss_mask_NL) of the ``n`` corpus examples that follow the pretraining corpus of
    ``corpus`` and ``seed`` in the same seeded stream (the first ``corpus.n_examples`` rows of that stream
    are exactly the pretraining corpus)."""
    tokens, mask = build_corpus(dataclasses.replace(corpus, n_examples=corpus.n_examples + n), seed)
    return tokens[-n:], mask[-n:]


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _nll_sum(graphdef, prompt_len: int, params, tokens_BL, mask_BL):
    lp, _ = token_logprobs(graphdef, params, tokens_BL, prompt_len)
    m = mask_BL[:, 1:]
    return -jnp.sum(lp * m), jnp.sum(m)


def corpus_cross_entropy(graphdef, params, base_cfg: BaseConfig, n: int = 2048) -> float:
    """Token-mean cross-entropy (nats) of ``params`` on the held-out slice of ``n`` pretraining-corpus
    examples of ``base_cfg`` (``heldout_corpus``), over the tokens pretraining was scored on."""
    tokens, mask = heldout_corpus(base_cfg.corpus, base_cfg.train.seed, n)
    total, count = 0.0, 0.0
    chunk = min(CE_CHUNK, n)
    for start in range(0, n, chunk):
        t, m = tokens[start:start + chunk], mask[start:start + chunk]
        if t.shape[0] < chunk:  # pad the last chunk with rows that count for nothing
            t = np.concatenate([t, np.repeat(t[:1], chunk - t.shape[0], axis=0)])
            m = np.concatenate([m, np.zeros((chunk - m.shape[0],) + m.shape[1:], m.dtype)])
        s, c = _nll_sum(graphdef, base_cfg.corpus.lengths[0], params, jnp.asarray(t), jnp.asarray(m))
        total, count = total + float(s), count + float(c)
    return total / count


def forgetting_between(base_cfg: BaseConfig, graphdef, base_params, tuned_params, trained_tasks, *,
                       n_problems: int = 256, n_corpus: int = 2048, seed: int = 0) -> dict:
    """Pass rate of every task the base knows and corpus cross-entropy, for the base and the tuned parameters.

    Returns the per-task rates and changes (tuned - base), ``forgetting``: the mean drop (base - tuned) of
    the pass rates of the tasks not in ``trained_tasks`` (NaN when the run trained on every task),
    ``trained_gain``: the mean change on the trained tasks, and the corpus cross-entropy of both with its
    change (tuned - base: positive means worse on the pretraining data)."""
    tasks = tuple(base_cfg.corpus.tasks)
    trained = tuple(trained_tasks) or tasks
    unknown = [t for t in trained if t not in tasks]
    if unknown:
        raise ValueError(f"Trained task {unknown[0]!r} is not one the base knows ({', '.join(tasks)}).")
    p_len, c_len = base_cfg.corpus.lengths
    rates = {name: task_pass_rates(graphdef, base_cfg.model, params, tasks, base_cfg.corpus.size, n_problems, p_len,
                                   c_len, seed)
             for name, params in (("base", base_params), ("tuned", tuned_params))}
    change = {t: rates["tuned"][t] - rates["base"][t] for t in tasks}
    others = [t for t in tasks if t not in trained]
    ce_base = corpus_cross_entropy(graphdef, base_params, base_cfg, n_corpus)
    ce_tuned = corpus_cross_entropy(graphdef, tuned_params, base_cfg, n_corpus)
    return {
        "tasks": list(tasks), "trained_tasks": list(trained), "other_tasks": others,
        "pass_base": rates["base"], "pass_tuned": rates["tuned"], "pass_change": change,
        "forgetting": float(-np.mean([change[t] for t in others])) if others else float("nan"),
        "trained_gain": float(np.mean([change[t] for t in trained])),
        "ce_base": ce_base, "ce_tuned": ce_tuned, "ce_change": ce_tuned - ce_base,
        "n_problems": n_problems, "n_corpus": n_corpus, "seed": seed,
    }


def params_from_flat(model_cfg, flat: dict):
    """(graphdef, float32 parameters) of a model of ``model_cfg`` holding a snapshot's arrays (bf16 or fp32)."""
    graphdef, template = init_params(model_cfg, 0)
    return graphdef, unflatten_params(template, {k: np.asarray(v, np.float32) for k, v in flat.items()})


def run_forgetting(run, tag: str | int = "final", *, n_problems: int = 256, n_corpus: int = 2048,
                   seed: int | None = None) -> dict:
    """``forgetting_between`` for a finished run (a ``toy_models.finetune.RunResult``): its released base
    snapshot against its snapshot ``tag`` (the released form of the storage mode: the bf16 export of an
    fp32_master run), on every task of its base; the run's trained tasks are ``spec.tasks``; ``seed``
    defaults to the run's seed."""
    spec = run.spec
    graphdef, base_params = params_from_flat(spec.base.model, run.snapshot("base"))
    _, tuned_params = params_from_flat(spec.base.model, run.snapshot(tag))
    return forgetting_between(spec.base, graphdef, base_params, tuned_params, spec.tasks, n_problems=n_problems,
                              n_corpus=n_corpus, seed=spec.train.seed if seed is None else seed)
