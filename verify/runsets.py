"""Run sets: what a claim declares that it reads, as data.

A run set is a ``RunSpec``, or a list, tuple, dict or dataclass (typically a frozen one from
``verify.experiments``) of run sets; any other value in it (a seed, a label, a learning rate) rides along
unchanged. The plan trains the leaves (``leaves``); when the claim decides, the framework hands it the
same structure with every ``RunSpec`` replaced by its finished run (``map_runs`` with
``verify.runs.Context.finished``), so a claim never builds a spec twice nor looks a run up by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from toy_models.finetune import RunSpec


def leaves(tree: Any) -> list[RunSpec]:
    """Every ``RunSpec`` of a run set, depth first in declaration order (dict insertion order, dataclass
    field order), repeats included."""
    out: list[RunSpec] = []
    map_runs(tree, lambda spec: out.append(spec) or spec)
    return out


def map_runs(tree: Any, fn: Callable[[RunSpec], Any]) -> Any:
    """The same structure with every ``RunSpec`` leaf replaced by ``fn(spec)``; other leaves unchanged."""
    if isinstance(tree, RunSpec):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: map_runs(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_runs(v, fn) for v in tree)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(tree, **{f.name: map_runs(getattr(tree, f.name), fn)
                                            for f in dataclasses.fields(tree) if f.init})
    return tree
