"""The probe set of a run, rebuilt exactly as the trainer builds it (``toy_models.finetune``): the run's
held-out pool, sequences sampled from the run's released base with the run's seed. The one probe builder of
the claims (the Fisher of gate1.weight_leash, the curvature of gate2.curvature and of the regime map)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toy_models.pool import build_pool, build_probe
from toy_models.transformer import unflatten_params


@dataclass
class ProbeSet:
    """A run's probe set at its base: the pretrained ``base`` (graph and parameter template), the released base
    weights ``flat0`` (float32, by dotted name) and as a parameter tree ``params0``, the probe token sequences
    ``tokens_NL`` with their completion mask ``mask_NC``, and the prompt length."""

    base: object
    flat0: dict
    params0: object
    tokens_NL: object
    mask_NC: object
    prompt_len: int


def probe_set(ctx, run) -> ProbeSet:
    """The probe set of ``run`` at its released base (memoised for the verify call)."""

    def compute():
        base = ctx.base(run.spec.base)
        cfg, t = run.spec, run.spec.train
        P, C = base.prompt_len, base.completion_len
        flat0 = {k: np.asarray(v, np.float32) for k, v in run.snapshot("base", master=True).items()}
        params0 = unflatten_params(base.params, flat0)
        heldout = build_pool(cfg.base.corpus.tasks, cfg.base.corpus.size, t.eval_problems, P, C, t.seed, heldout=True)
        probe = build_probe(base.graphdef, cfg.base.model, params0, heldout, t.probe_size, P, C, t.seed)
        return ProbeSet(base, flat0, params0, probe.tokens_NL, probe.mask_NC, P)

    return ctx.memo(("probe", run.directory.name), compute)
