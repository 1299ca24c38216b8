"""What a claim reads while it decides: the finished runs of its run set, the pretrained bases, and a memo.

Runs are executed before any claim decides (``verify.plan``, ``verify.execute``); ``Context.finished`` then
maps every ``RunSpec`` of a claim's run set (``verify.runsets``) to its finished run in the run cache, and
names every run that did not finish in one error, so a claim never starts a training job behind the plan's
back. Several claims read the same runs; derived data (weight-matrix pairs, masks, curvature: the measures
of ``verify.measures``) is memoised on the Context for one verify call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from toy_models.finetune import RunResult, RunSpec
from toy_models.pretrain import Base, BaseConfig, pretrain
from toy_models.runs import run_dir
from verify.profiles import Profile
from verify.runsets import leaves, map_runs


class RunNotReady(RuntimeError):
    """A claim's run set holds a run that has not finished (it failed, or it was not executed)."""


@dataclass
class Context:
    """What a claim needs: the profile, the finished runs, where to put figures, and a memo."""

    profile: Profile
    out_dir: Path
    claim_id: str = ""
    _memo: dict = field(default_factory=dict)

    @property
    def figures(self) -> Path:
        """The figures folder of the report (created on first use)."""
        path = self.out_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def memo(self, key, fn):
        """``fn()`` computed once per verify call under ``key``."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def base(self, cfg: BaseConfig | None = None) -> Base:
        """A pretrained base (the profile's by default); it must have been built by the plan."""
        cfg = cfg or self.profile.base
        if not (run_dir("base", cfg) / "checkpoint" / "meta.json").exists():
            raise RunNotReady(f"Claim {self.claim_id or '?'} reads a base model that the plan did not build.")
        return self.memo(("base", cfg), lambda: pretrain(cfg))

    def finished(self, runs):
        """The run set ``runs`` with every RunSpec replaced by its finished run (memoised); every run that has
        not finished is named in one ``RunNotReady``."""
        missing = [spec for spec in leaves(runs) if not (run_dir(spec.train.method, spec) / "summary.json").exists()]
        if missing:
            raise RunNotReady(f"Claim {self.claim_id or '?'} reads {len(missing)} run(s) that did not finish: " + "; ".join(
                f"{run_dir(s.train.method, s).name} ({s.train.method}, seed {s.train.seed}, lr {s.train.lr:g})"
                for s in dict.fromkeys(missing)) + ".")
        return map_runs(runs, self._load)

    def _load(self, spec: RunSpec) -> RunResult:
        directory = run_dir(spec.train.method, spec)
        return self.memo(("run", directory.name),
                         lambda: RunResult(spec, directory, json.loads((directory / "summary.json").read_text())))
