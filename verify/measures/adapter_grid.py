"""The adapter grid as a table (C15, C16): per cell (kind, rank, lr, seed) of one method's grid the record of its
finished run (gain, steps to the target gain, collapse and onset, KL to the base, NSS and angle), the best
learning rate of each arm and the order of "how soon" an arm collapses."""

from __future__ import annotations

import math

import numpy as np

from verify.experiments.adapters import FULL
from verify.measures.spectra import drift
from verify.measures.training import collapse_point, steps_to_target
from verify.stats import over_seeds


def cell_record(ctx, run) -> dict:
    """Everything the grid reads of one finished run (memoised): gain at the last step, steps to the profile's target
    gain, collapse and onset (RL: held-out, reward and NaN criteria; SFT: NaN only, because SFT on demonstrations
    first falls below the base while it learns the scratchpad format), exact KL to the base, NSS and angle."""

    def compute():
        s, t = run.summary, run.spec.train
        records = run.metrics()
        evals = [(m["step"], m["heldout/gain"]) for m in records if "heldout/gain" in m]
        steps_e, gains_e = [e[0] for e in evals], [e[1] for e in evals]
        diverged = s.get("diverged_at") if s.get("reason") == "diverged" else None
        if t.method == "rl":
            rewards = [m["reward/mean"] for m in records if "reward/mean" in m]
            collapsed, onset, cause = collapse_point(steps_e, gains_e, rewards, window=t.eval_every,
                                                     base_acc=s["base_mean"], diverged_at=diverged)
        else:
            collapsed, onset, cause = (diverged is not None), diverged, ("NaN" if diverged is not None else "")
        nss, angle = drift(ctx, run)
        return {"gain": float(s["gain"]), "steps_to_target": steps_to_target(steps_e, gains_e, ctx.profile.target_gain),
                "collapsed": collapsed, "collapse_step": onset, "collapse_cause": cause, "kl": float(s["kl_to_base_final"]),
                "nss": nss, "angle": angle, "stopped_at": s["stopped_at"], "eval_steps": steps_e, "eval_gains": gains_e}

    return ctx.memo(("cell_record", run.directory.name), compute)


def best_lr(gains_by_lr: dict) -> float:
    """The learning rate with the highest seed-mean gain at equal steps (ties: the smaller rate); NaNs ignored.
    The rule for every method's best rate, full fine-tuning's included."""
    def mean(v):
        v = [x for x in v if x is not None and math.isfinite(x)]
        return float(np.mean(v)) if v else -math.inf

    return min(gains_by_lr, key=lambda lr: (-mean(gains_by_lr[lr]), lr))


def collapse_key(collapse_lr: float | None, collapse_step: int | None) -> tuple[float, float]:
    """Ordering of 'how soon' a method collapses over a learning-rate grid: the lowest rate at which it collapsed,
    then the onset step at that rate ('sooner' at the same rate); never collapsed sorts last."""
    return (math.inf if collapse_lr is None else float(collapse_lr), math.inf if collapse_step is None else float(collapse_step))


def first_collapse(lrs, collapsed, steps) -> tuple[float | None, int | None]:
    """(lowest rate at which the run collapsed, its onset step) over one seed's rates; (None, None) if none did."""
    hits = sorted((lr, st) for lr, c, st in zip(lrs, collapsed, steps) if c)
    return hits[0] if hits else (None, None)


class Grid:
    """The finished runs of one method's grid (``runs``: {(kind, rank, lr, seed): finished run}, as the experiment
    ``verify.experiments.adapters`` declares them) and their records."""

    def __init__(self, ctx, method: str, runs: dict):
        k = ctx.profile.adapters
        self.method = method
        self.steps = k.steps if method == "rl" else k.sft_steps
        self.cells = list(runs)
        self.runs = dict(runs)
        self.rec = {c: cell_record(ctx, r) for c, r in self.runs.items()}
        self.seeds = sorted({c[3] for c in self.cells})
        self.arms = list(dict.fromkeys((c[0], c[1]) for c in self.cells))  # (kind, rank), in declaration order

    def lrs(self, kind: str, rank: int) -> list[float]:
        """The learning rates of one arm, ascending."""
        return sorted({c[2] for c in self.cells if c[0] == kind and c[1] == rank})

    def values(self, kind: str, rank: int, lr: float, key: str) -> list:
        """Per-seed values of one record field in one cell."""
        return [self.rec[(kind, rank, lr, s)][key] for s in self.seeds]

    def gains(self, kind: str, rank: int) -> dict:
        """{lr: per-seed gains} of one arm."""
        return {lr: self.values(kind, rank, lr, "gain") for lr in self.lrs(kind, rank)}

    def best(self, kind: str, rank: int) -> tuple[float, list[float]]:
        """(best rate, per-seed gains at it) of one arm."""
        g = self.gains(kind, rank)
        lr = best_lr(g)
        return lr, g[lr]

    def collapse_keys(self, kind: str, rank: int) -> list[tuple[float, float]]:
        """Per seed: ``collapse_key`` of the arm over its rates."""
        lrs = self.lrs(kind, rank)
        out = []
        for s in self.seeds:
            recs = [self.rec[(kind, rank, lr, s)] for lr in lrs]
            out.append(collapse_key(*first_collapse(lrs, [r["collapsed"] for r in recs], [r["collapse_step"] for r in recs])))
        return out

    def all_runs(self) -> list:
        """Every RunResult of the grid."""
        return list(self.runs.values())


def arm_label(kind: str, rank: int) -> str:
    """Legend label of an arm: "full fine-tuning" or "<kind> r<rank>"."""
    return "full fine-tuning" if kind == FULL else f"{kind} r{rank}"


def cell_numbers(grid: Grid) -> dict:
    """Per (kind, rank, lr): gain, KL, NSS, angle over seeds; seeds that reached the target and their median step;
    seeds collapsed and their median onset."""
    out = {}
    for kind, rank in grid.arms:
        for lr in grid.lrs(kind, rank):
            tag = f"{grid.method}/{kind}" + (f"/r{rank}" if kind != FULL else "") + f"/lr{lr:g}"
            for key in ("gain", "kl", "nss", "angle"):
                out[f"{tag}/{key}"] = over_seeds(grid.values(kind, rank, lr, key))
            reached = [x for x in grid.values(kind, rank, lr, "steps_to_target") if x is not None]
            out[f"{tag}/reached_target"] = f"{len(reached)}/{len(grid.seeds)}"
            out[f"{tag}/steps_to_target_median"] = float(np.median(reached)) if reached else float("nan")
            onset = [x for x, c in zip(grid.values(kind, rank, lr, "collapse_step"), grid.values(kind, rank, lr, "collapsed")) if c]
            out[f"{tag}/collapsed"] = f"{len(onset)}/{len(grid.seeds)}"
            out[f"{tag}/collapse_step_median"] = float(np.median(onset)) if onset else float("nan")
    return out
