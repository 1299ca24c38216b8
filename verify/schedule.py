"""Which missing run a free worker takes next: one compile per compiled program, not one per worker.

A worker's first run of a kind spends most of its time compiling (10 to 20 s on one core against 1 to 3 s
of training on `quick`); later runs of the same kind load the program from the persistent compilation
cache, or reuse it in memory. Handed out in plan order, two workers often start two runs of one kind at
once and compile it twice. The rule here: a free worker takes (1) the first run of a kind no worker has
started (the longest items go first, so the plan ends on short ones), then (2) a run of a kind already
compiled, and only when nothing else is left (3) a run of a kind another worker is still compiling.
Order changes wall time only: a run is a pure function of its spec, wherever and whenever it runs.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable


def compile_group(kind: str, data: dict) -> Hashable:
    """A key equal for work items that run the same compiled programs (a RunSpec or base config as a dict).

    A heuristic for ordering only: two items under one key that compile differently cost a compile, never a
    wrong result. Kept: everything that is static in the steps (``StepStatics``: model, method, RL options,
    optimizer but its rate, precision, batch, devices, the adapter's shape, pissa and milora sharing lora's
    step, the preference options of DPO and SimPO runs), the data shapes (pool, held-out set and probe sizes;
    a preference run's pair set has the pool's row count whatever the seed), whether a mask is present, and
    the static segment length; dropped: rates, seeds, step counts and stopping rules (traced or outside the steps), the
    base's pretraining settings and the edit (they change weights, not programs)."""
    from toy_models.config import from_dict
    from toy_models.finetune import RunSpec, segment_ends
    from toy_models.preference import PREFERENCE_METHODS
    from toy_models.pretrain import BaseConfig

    if kind == "base":
        base = from_dict(BaseConfig, data)
        return ("base", base.model, base.corpus.lengths)
    spec = from_dict(RunSpec, data)
    t, n = spec.train, len(spec.tasks)
    ends = segment_ends(t)
    length = max(b - a for a, b in zip([0] + ends, ends))  # as toy_models.finetune.finetune sizes its segments
    adapter = spec.adapter
    if adapter.kind in ("pissa", "milora"):
        adapter = dataclasses.replace(adapter, kind="lora")
    return ("run", spec.base.model, spec.base.corpus.lengths, spec.rl, t.method, t.optim(), t.precision,
            spec.batch_sequences, t.devices, t.pool_per_task * n, t.eval_problems * n, t.probe_size, length, adapter,
            spec.mask.kind != "none", spec.mask.other, spec.pref if t.method in PREFERENCE_METHODS else None)


def pick(groups: list[Hashable], compiled: set, compiling: set) -> int:
    """Index of the next item among waiting items of these groups (see the module docstring for the rule)."""
    for i, g in enumerate(groups):
        if g not in compiled and g not in compiling:
            return i
    for i, g in enumerate(groups):
        if g in compiled:
            return i
    return 0
