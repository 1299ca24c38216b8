"""Device-resident problem sets for fine-tuning: the training pool, the held-out set and the KL probe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.evaluate import EVAL_SEED_OFFSET
from toy_models.metrics import completion_logp
from toy_models.sampling import sample
from toy_models.steps import Pool, Probe
from toy_models.tasks import encode_answer, encode_completion, encode_prompt, get_task, make_problems

TRAIN_SEED_OFFSET = 500_009


def build_pool(tasks, size: int, n_per_task: int, prompt_len: int, completion_len: int, seed: int,
               heldout: bool = False) -> Pool:
    """Problems of every task with answers and scratchpad demonstrations (seeded).

    Training and held-out problems come from disjoint seed streams (``heldout`` picks the stream)."""
    offset = EVAL_SEED_OFFSET if heldout else TRAIN_SEED_OFFSET
    prompts, answers, task_ids, demos = [], [], [], []
    for i, name in enumerate(tasks):
        task = get_task(name)
        for pr in make_problems(name, n_per_task, size, offset + 31 * seed + i):
            p = encode_prompt(pr.prompt, prompt_len)
            prompts.append(p)
            answers.append(encode_answer(pr.answer, completion_len))
            demos.append(np.concatenate([p, encode_completion(task.demonstration(pr), completion_len)]))
            task_ids.append(i)
    return Pool(jnp.asarray(np.stack(prompts)), jnp.asarray(np.stack(answers)),
                jnp.asarray(np.array(task_ids, np.int32)), jnp.asarray(np.stack(demos)))


def build_probe(graphdef, mcfg, base_params, heldout: Pool, n: int, prompt_len: int, completion_len: int, seed: int) -> Probe:
    """Held-out prompts with one base-model sample each, and the base log-probs there (for exact KLs)."""
    prompts = heldout.prompts_NP[:: max(1, heldout.prompts_NP.shape[0] // n)][:n]
    comp, _, mask = sample(graphdef, base_params, prompts, jax.random.key(seed + 7), cfg=mcfg, completion_len=completion_len)
    tokens = jnp.concatenate([prompts, comp], axis=1)
    return Probe(tokens, mask, completion_logp(graphdef, base_params, tokens, prompt_len))
