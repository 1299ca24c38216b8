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

from typing import Hashable

# RunSpec fields that are traced or used outside the compiled steps: runs differing only here share programs
_TRAIN_RUNTIME = ("lr", "seed", "data_seed", "max_steps", "target_gain", "snapshot_steps", "checkpoint_every", "on_nan")


def compile_group(kind: str, data: dict) -> Hashable:
    """A key equal for work items that run the same compiled programs (a RunSpec or base config as a dict).

    A heuristic for ordering only: two items under one key that compile differently cost a compile, never a
    wrong result. Kept: the model and sequence layout, the method, RL and optimizer options, precision,
    batch, data sizes, devices, the adapter's shape (pissa and milora share lora's step) and whether a mask
    is present; dropped: rates, seeds, lengths and stopping rules (traced or outside the step), the base's
    pretraining settings and the edit (they change weights, not programs)."""
    if kind == "base":
        return ("base", repr(data["model"]), repr(data["corpus"].get("tasks")), data["corpus"].get("size"))
    train = {k: v for k, v in data["train"].items() if k not in _TRAIN_RUNTIME}
    adapter = dict(data["adapter"])
    if adapter.get("kind") in ("pissa", "milora"):
        adapter["kind"] = "lora"
    mask = data["mask"]
    return ("run", repr(data["base"]["model"]), repr(data["base"]["corpus"].get("tasks")),
            data["base"]["corpus"].get("size"), repr(sorted(data["rl"].items())), repr(sorted(train.items())),
            repr(sorted(adapter.items())), mask.get("kind") != "none", mask.get("other"))


def pick(groups: list[Hashable], compiled: set, compiling: set) -> int:
    """Index of the next item among waiting items of these groups (see the module docstring for the rule)."""
    for i, g in enumerate(groups):
        if g not in compiled and g not in compiling:
            return i
    for i, g in enumerate(groups):
        if g in compiled:
            return i
    return 0
