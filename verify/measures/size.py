"""Update size of a run and the snapshot of another run at the same size (docs/science.md section 6: RL against
SFT at equal update size).

Two sizes, both on the fp32 master weights against the released base: the *drift ratio* (median over the weights
that moved by the end of the run of |w_t - w_0| / half-ULP(w_0), ``theory.precision.drift_ratio``: what decides a
bf16 mask) and the *relative update norm* (median over the weight matrices of ||W_t - W_0||_F / ||W_0||_F,
``theory.precision.relative_update_norm``: what spectra, energies, curvature and KL scale with).

``RunAtStep`` is a finished run read at one of its snapshots: ``snapshot("final")`` is that snapshot, ``metrics``
stop there, and its summary holds the step, the held-out gain and KL to the base logged there and its two sizes,
so every measure and the regime record read it like any finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theory.precision import drift_ratio, relative_update_norm
from toy_models.finetune import RunResult
from toy_models.runs import read_metrics
from toy_models.transformer import weight_matrices

SIZES = ("drift_ratio", "relative_update_norm")


def update_size(run, step="final") -> dict[str, float]:
    """{"drift_ratio", "relative_update_norm"} of ``run`` at snapshot ``step`` (fp32 master against the base). The
    drift ratio takes the weights whose master value differs between the base and the run's final snapshot (the
    ones the run moved), so every snapshot of one run is measured over the same weights."""
    base = {k: np.asarray(v, np.float32) for k, v in run.snapshot("base", master=True).items()}
    final = {k: np.asarray(v, np.float32) for k, v in run.snapshot("final", master=True).items()}
    at = final if step == "final" else {k: np.asarray(v, np.float32) for k, v in run.snapshot(step, master=True).items()}
    names = sorted(base)
    moved = np.concatenate([(final[k] != base[k]).ravel() for k in names])
    w0 = np.concatenate([base[k].ravel() for k in names])
    w1 = np.concatenate([at[k].ravel() for k in names])
    m0, m1 = weight_matrices(base), weight_matrices(at)
    rel = [relative_update_norm(m0[k], m1[k]) for k in m0]
    return {"drift_ratio": float(drift_ratio(w0, w1, moved)), "relative_update_norm": float(np.nanmedian(rel))}


@dataclass
class RunAtStep(RunResult):
    """A finished run read at snapshot ``step`` (its directory name carries '@step', so memoised measures keep it
    apart from the run's final state); ``source`` is the run's real folder."""

    source: Path = Path()
    step: int = 0

    def metrics(self) -> list[dict]:
        """The run's records up to ``step``."""
        return [r for r in read_metrics(self.source / "metrics.jsonl") if r["step"] <= self.step]

    def snapshot(self, step="final", master: bool = False) -> dict:
        """Snapshot ``step`` of the run ('final' reads the snapshot this view stands at)."""
        inner = RunResult(self.spec, self.source, self.summary)
        return inner.snapshot(self.step if step == "final" else step, master=master)

    def snapshot_steps(self) -> list[str]:
        """Snapshot tags of the run up to this view's step ('base' included)."""
        tags = RunResult(self.spec, self.source, self.summary).snapshot_steps()
        return [t for t in tags if not t.isdigit() or int(t) <= self.step]


def at_step(run, step: int, sizes: dict[str, float] | None = None) -> RunAtStep:
    """``run`` read at its snapshot ``step``: summary with the step, the held-out gain and the exact KL to the base
    logged at that step, and both update sizes in the regime block (``sizes``: ``update_size(run, step)`` when
    already known)."""
    records = {r["step"]: r for r in run.metrics()}
    rec = records.get(step, {})
    sizes = update_size(run, step) if sizes is None else sizes
    summary = {"stopped_at": step, "reason": "snapshot", "gain": rec.get("heldout/gain"),
               "kl_to_base_final": rec.get("kl/to_base_exact"), "base_acc": run.summary.get("base_acc"),
               "regime": {**sizes, "steps": step, "lr": run.spec.train.lr}}
    return RunAtStep(run.spec, run.directory.parent / f"{run.directory.name}@{step}", summary, run.directory, step)


def snapshot_sizes(ctx, run) -> dict[int, dict[str, float]]:
    """{snapshot step: both update sizes there} over a run's numbered snapshots (memoised, so claims reading the
    run by drift ratio and by ||dW|| / ||W|| load its snapshots once)."""
    def compute():
        steps = sorted(int(t) for t in run.snapshot_steps() if t.isdigit())
        return {s: update_size(run, s) for s in steps}

    return ctx.memo(("snapshot_sizes", run.directory.name), compute)


def at_equal_size(ctx, run, target, by: str) -> RunAtStep:
    """``run`` read at the snapshot whose size ``by`` is nearest the size of ``target`` (a finished run, at its final
    snapshot): the equal-update-size comparator of a claim."""
    if by not in SIZES:
        raise ValueError(f"Argument `by` must be one of {SIZES}, got {by!r}.")
    want = ctx.memo(("update_size", target.directory.name), lambda: update_size(target))[by]
    sizes = snapshot_sizes(ctx, run)
    if not sizes:
        raise ValueError(f"Run {run.directory.name} has no numbered snapshots to read at equal update size.")
    step = min(sizes, key=lambda s: (abs(sizes[s][by] - want), s))
    return ctx.memo(("at_step", run.directory.name, step), lambda: at_step(run, step, sizes[step]))
