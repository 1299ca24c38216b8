"""The plan of a verify call: every run its claims declared, deduplicated, checked against the run cache.

``python -m verify plan --profile quick`` prints it (base models, then fine-tuning runs, cached or not,
with an estimated time) without training anything; ``verify.execute`` runs what is missing. A run counts
as cached only when it passes its manifest check (``toy_models.run_store.finished``); a damaged one is
named, quarantined and planned again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from toy_models.finetune import RunSpec
from toy_models.pretrain import BaseConfig
from toy_models.run_store import finished, stale_partials
from toy_models.runs import run_dir, runs_root
from verify.profiles import Profile

# Fallback cost model for runs with no finished sibling in the cache (2 CPU cores, measured on the tiny and
# small bases): seconds per step by (d_model, sampling or not), plus a fixed cost (compilation, evaluation).
SECONDS_PER_STEP = {(32, True): 0.03, (32, False): 0.012, (64, True): 0.15, (64, False): 0.06}
FIXED_SECONDS = 10.0


def spec_kind(spec: RunSpec) -> str:
    """The run-directory kind of a spec (its method)."""
    return spec.train.method


def describe(spec: RunSpec) -> str:
    """One short line naming what distinguishes a run."""
    t = spec.train
    rate = f"lr {t.lr:g}" if t.lr_rule == "fixed" else f"lr for step ratio {t.lr:g} on the base's median |w|"
    parts = [t.method, f"seed {t.seed}", rate, f"steps <= {t.max_steps}", t.precision]
    if t.target_gain is not None:
        parts.append(f"to +{t.target_gain:g}")
    if t.optimizer != "adamw":
        parts.append(t.optimizer)
    if t.eps != 1e-8:
        parts.append(f"eps {t.eps:g}")
    if t.tasks:
        parts.append("tasks " + "+".join(t.tasks))
    if spec.rl.beta == 0 and t.method == "rl":
        parts.append(f"beta 0, clip {spec.rl.epsilon:g}/{spec.rl.eps_high:g}")
    if t.method in ("dpo", "simpo"):
        pref = spec.pref
        parts.append(f"beta {pref.beta_for(t.method):g}" + (f", gamma {pref.simpo_gamma:g}" if t.method == "simpo" else "")
                     + (f", smoothing {pref.label_smoothing:g}" if pref.label_smoothing else "")
                     + (", reference-free" if pref.reference_free else "") + (", ipo" if pref.loss_type == "ipo" else ""))
    for name in ("adapter", "mask", "edit"):
        sub = getattr(spec, name, None)
        if sub is not None and getattr(sub, "kind", "none") != "none":
            parts.append(f"{name} {sub.kind}" + (f" r{sub.rank}" if hasattr(sub, "rank") else ""))
    if spec.base.train.steps == 0:
        parts.append("random-init base")
    if spec.base.model.d_model != 32 and spec.base.model.d_model != 64:
        parts.append(f"d_model {spec.base.model.d_model}")
    if spec.base.train.seed != 0:
        parts.append(f"base seed {spec.base.train.seed}")
    return ", ".join(parts)


@dataclass
class Plan:
    """Runs of the chosen claims, in first-declared order, deduplicated by cache directory."""

    profile: Profile
    claim_ids: list[str]
    runs: list[RunSpec] = field(default_factory=list)
    needed_by: dict[str, list[str]] = field(default_factory=dict)  # run dir name -> claim ids

    @property
    def bases(self) -> list[BaseConfig]:
        """Distinct base models the runs start from (the profile's first)."""
        out = [self.profile.base]
        for spec in self.runs:
            if spec.base not in out:
                out.append(spec.base)
        return out

    def missing_bases(self) -> list[BaseConfig]:
        """Bases not yet pretrained (or damaged: quarantined, to be pretrained again)."""
        return [b for b in self.bases if not finished(run_dir("base", b))]

    def missing_runs(self) -> list[RunSpec]:
        """Runs not finished in the cache (or damaged: quarantined, to be trained again)."""
        return [s for s in self.runs if not is_done(s)]

    def estimate_seconds(self, spec: RunSpec) -> float:
        """Expected wall time of a run: steps x seconds per step of a finished sibling (same base and method) in
        the cache when there is one, else the fallback table; matched runs count their cap (an upper bound)."""
        rate = _cached_rate(spec) or SECONDS_PER_STEP.get((spec.base.model.d_model, spec.train.method != "sft"), 0.2)
        return FIXED_SECONDS + rate * spec.train.max_steps

    def render(self) -> str:
        """The plan as text: bases, runs (cached or to run, claims that read them) and the estimated time."""
        lines = [f"plan for profile `{self.profile.name}` ({self.profile.description}); claims: {', '.join(self.claim_ids)}",
                 f"run cache: {runs_root()}", ""]
        missing_b = self.missing_bases()
        lines.append(f"base models: {len(self.bases)} ({len(missing_b)} to pretrain)")
        for b in self.bases:
            state = "to run" if b in missing_b else "cached"
            lines.append(f"  [{state:6s}] d_model {b.model.d_model}, {b.train.steps} pretraining steps ({run_dir('base', b).name})")
        missing = self.missing_runs()
        lines.append(f"fine-tuning runs: {len(self.runs)} ({len(missing)} to run)")
        for spec in self.runs:
            name = run_dir(spec_kind(spec), spec).name
            state = "to run" if spec in missing else "cached"
            lines.append(f"  [{state:6s}] {describe(spec)}  <- {', '.join(self.needed_by[name])}")
        total = sum(self.estimate_seconds(s) for s in missing) + 60.0 * len(missing_b)
        stale = stale_partials(runs_root())
        if stale:
            lines.append(f"interrupted runs left by killed processes: {len(stale)} (the next writer of each resumes it; "
                         f"deleting them is safe): {', '.join(p.name for p in stale)}")
        lines.append("")
        lines.append(f"estimated time for what is missing: at most {total / 60:.1f} min on one worker "
                     "(matched runs usually stop well before their step cap)")
        return "\n".join(lines)


def is_done(spec: RunSpec) -> bool:
    """True when the run of ``spec`` is finished in the cache and passes its manifest check."""
    return finished(run_dir(spec_kind(spec), spec))


def _cached_rate(spec: RunSpec) -> float | None:
    root = runs_root()
    if not root.exists():
        return None
    rates = []
    for summary in root.glob(f"{spec_kind(spec)}-*/summary.json"):
        try:
            s = json.loads(summary.read_text())
            cfg = json.loads((summary.parent / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if cfg["base"]["model"]["d_model"] == spec.base.model.d_model and s.get("seconds") and s.get("stopped_at"):
            rates.append(s["seconds"] / s["stopped_at"])
    return sorted(rates)[len(rates) // 2] if rates else None


def build_plan(claims: list, profile: Profile) -> Plan:
    """Gather the runs every claim declares for ``profile``, deduplicated by cache directory."""
    plan = Plan(profile, [c.id for c in claims])
    seen = {}
    for c in claims:
        for spec in c.specs(profile):
            name = run_dir(spec_kind(spec), spec).name
            if name not in seen:
                seen[name] = spec
                plan.runs.append(spec)
                plan.needed_by[name] = []
            if c.id not in plan.needed_by[name]:
                plan.needed_by[name].append(c.id)
    return plan
