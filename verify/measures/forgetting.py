"""Forgetting of a finished run (docs/science.md section 6, forgetting claims): the held-out pass rate of every task
the base knows and the cross-entropy on a held-out slice of the pretraining corpus, for the run's released base and
its released final snapshot (``toy_models.forgetting``: the run's own evaluation problems and sampling key for both,
so an unchanged model forgets exactly 0). The base's numbers depend on the base and the seed only and are computed
once per verify call."""

from __future__ import annotations

import jax
import numpy as np

from toy_models.forgetting import EVAL_KEY_OFFSET, corpus_cross_entropy
from toy_models.pool import build_pool
from toy_models.steps import heldout_accuracy
from toy_models.transformer import init_params, unflatten_params

N_PROBLEMS = 256  # held-out problems per task
N_CORPUS = 2048  # held-out corpus examples


def _scores(ctx, spec, flat: dict) -> dict:
    """{"pass": {task: pass rate}, "ce": corpus cross-entropy} of parameters ``flat`` on the base of ``spec``: the
    held-out problems and evaluation key of a run of its seed (``toy_models.forgetting.task_pass_rates``, with the
    model template and the problems built once per verify call)."""
    base, seed = spec.base, spec.train.seed
    tasks, (p_len, c_len) = tuple(base.corpus.tasks), base.corpus.lengths
    graphdef, template = ctx.memo(("forgetting_template", base.model), lambda: init_params(base.model, 0))
    params = unflatten_params(template, {k: np.asarray(v, np.float32) for k, v in flat.items()})
    h = ctx.memo(("forgetting_heldout", base.corpus, seed),
                 lambda: build_pool(tasks, base.corpus.size, N_PROBLEMS, p_len, c_len, seed, heldout=True))
    acc = heldout_accuracy(graphdef, base.model, c_len, len(tasks), params, h.prompts_NP, h.answers_NA, h.task_N,
                           jax.random.key(seed + EVAL_KEY_OFFSET))
    return {"pass": {t: float(a) for t, a in zip(tasks, np.asarray(acc))},
            "ce": corpus_cross_entropy(graphdef, params, base, N_CORPUS)}


def base_scores(ctx, run) -> dict:
    """``_scores`` of a run's released base (memoised per base and seed)."""
    return ctx.memo(("forgetting_base", run.spec.base, run.spec.train.seed), lambda: _scores(ctx, run.spec, run.snapshot("base")))


def forgetting_of(ctx, run, flat: dict) -> dict:
    """Forgetting of parameters ``flat`` against ``run``'s base: ``pass_change`` per task (tuned - base),
    ``forgetting`` (mean drop of the pass rates of the tasks the run did not train on), ``trained_gain`` (mean change
    on its trained tasks) and ``ce_change`` (corpus cross-entropy, tuned - base, nats per token)."""
    base, tuned = base_scores(ctx, run), _scores(ctx, run.spec, flat)
    tasks, trained = list(base["pass"]), set(run.spec.tasks)
    change = {t: tuned["pass"][t] - base["pass"][t] for t in tasks}
    others = [t for t in tasks if t not in trained]
    return {"pass_change": change, "ce_change": tuned["ce"] - base["ce"],
            "forgetting": float(-np.mean([change[t] for t in others])) if others else float("nan"),
            "trained_gain": float(np.mean([change[t] for t in tasks if t in trained]))}


def forgetting(ctx, run) -> dict:
    """``forgetting_of`` a run's released final snapshot (memoised; an equal-size view is read at its step)."""
    return ctx.memo(("forgetting", run.directory.name), lambda: forgetting_of(ctx, run, run.snapshot("final")))
