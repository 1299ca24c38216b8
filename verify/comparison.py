"""RL against a comparator, decided the same way by every claim that compares RL with SFT (docs/science.md
section 6): one per-seed statistic ``stat(rl_run, comparator_run)`` and one pre-registered rule, applied to

- "equal size" (decisive): SFT at the RL rate, read at the snapshot whose update size (``by``: drift ratio or
  ||dW|| / ||W||) equals the RL run's of the same seed;
- "customary" (descriptive): SFT at its own rate, matched gain, as the paper compares them;
- "placebo" (control): RL at the SFT rate, matched gain, in the comparator role; if the rule reproduces there,
  the comparison is explained by update size (the finisher's CONTROL FAILED);
- "next seed" (negative control): the RL run of the next seed in the comparator role, the same method at the
  same size, so the effect is absent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from verify.experiments.compared import Compared
from verify.measures.size import at_equal_size, update_size
from verify.registry import Control, negative, placebo
from verify.rules import Interval, Outcome

EQUAL_SIZE, CUSTOMARY, PLACEBO, NEXT_SEED = "equal size", "customary", "placebo", "next seed"


@dataclass
class Comparison:
    """Per comparator: the per-seed values of the statistic and the rule's outcome; the runs by role."""

    values: dict[str, list[float]]
    outcomes: dict[str, Outcome]
    runs: dict[str, list]
    equal_size: list  # the equal-size SFT views (``verify.measures.size.RunAtStep``), one per seed

    @property
    def decisive(self) -> Outcome:
        """The outcome at equal update size."""
        return self.outcomes[EQUAL_SIZE]

    def controls(self) -> list[Control]:
        """The placebo and the next-seed null as controls for the finisher."""
        return [placebo("RL at the SFT rate in the comparator role (matched gain)", self.outcomes[PLACEBO].status),
                negative("RL of the next seed in the comparator role", self.outcomes[NEXT_SEED].status)]

    def descriptive(self) -> dict[str, Outcome]:
        """The customary comparison, reported beside the decisive one."""
        return {"SFT at its customary rate, matched gain": self.outcomes[CUSTOMARY]}


def compare(ctx, runs: Compared, stat: Callable, rule, by: str) -> Comparison:
    """Apply ``rule`` to the per-seed ``stat(rl, comparator)`` for every comparator (module docstring)."""
    rl = list(runs.rl)
    equal = [at_equal_size(ctx, s, r, by) for s, r in zip(runs.sft_size, rl)]
    comps = {EQUAL_SIZE: equal, CUSTOMARY: list(runs.sft), PLACEBO: list(runs.placebo), NEXT_SEED: rl[1:] + rl[:1]}
    values = {k: [stat(a, b) for a, b in zip(rl, v)] for k, v in comps.items()}
    outcomes = {k: rule.decide(Interval.of(v)) for k, v in values.items()}
    roles = {"rl": rl, "sft": list(runs.sft), "sft at the rl rate, equal size": equal,
             "placebo: rl at the sft rate": list(runs.placebo)}
    return Comparison(values, outcomes, roles, equal)


def size_note(ctx, comparison: Comparison, by: str) -> str:
    """One sentence: the sizes matched at equal update size and SFT's gain there."""
    rl_sizes = [ctx.memo(("update_size", r.directory.name), lambda r=r: update_size(r))[by] for r in comparison.runs["rl"]]
    sft_sizes = [v.summary["regime"][by] for v in comparison.equal_size]
    gains = [v.summary.get("gain") for v in comparison.equal_size]
    fmt = lambda xs: ", ".join("-" if x is None else f"{x:.3g}" for x in xs)  # noqa: E731
    return (f"Equal update size by {by}: RL {fmt(rl_sizes)}; SFT at the RL rate read at steps "
            f"{[v.step for v in comparison.equal_size]} with {fmt(sft_sizes)}, where its held-out gain was {fmt(gains)} "
            "(RL's: the target gain).")
