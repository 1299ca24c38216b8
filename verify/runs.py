"""What a claim reads while it decides: finished runs, looked up by their ``RunSpec`` in the run cache.

Runs are executed before any claim decides (``verify.plan``, ``verify.execute``). A claim asking for a
run it did not declare gets one clear error instead of a silent training job, so the plan of a
profile is always the whole list of runs its claims read. Several claims read the same runs; derived
data (weight-matrix pairs, masks) is memoised on the Context for one verify call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from toy_models.finetune import RunResult, RunSpec
from toy_models.pretrain import Base, BaseConfig, pretrain
from toy_models.runs import run_dir
from verify.profiles import Profile


class RunNotReady(RuntimeError):
    """A claim asked for a run that has not been executed (it is missing from the claim's declared runs)."""


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

    def run(self, spec: RunSpec) -> RunResult:
        """The finished run of ``spec``; a run that was not executed is refused by name."""
        directory = run_dir(spec.train.method, spec)
        summary = directory / "summary.json"
        if not summary.exists():
            raise RunNotReady(f"Claim {self.claim_id or '?'} reads run {directory.name} ({spec.train.method}, seed "
                              f"{spec.train.seed}, lr {spec.train.lr:g}), which is not finished: declare it in the claim's runs.")
        return self.memo(("run", directory.name), lambda: RunResult(spec, directory, json.loads(summary.read_text())))

    def rl(self, seed: int, **kw) -> RunResult:
        """Shortcut: ``run(profile.rl(seed, **kw))``."""
        return self.run(self.profile.rl(seed, **kw))

    def sft(self, seed: int, **kw) -> RunResult:
        """Shortcut: ``run(profile.sft(seed, **kw))``."""
        return self.run(self.profile.sft(seed, **kw))
