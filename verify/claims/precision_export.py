"""Gate III's counterfactual (issue 22): the same fp32-master RL runs released as a bf16 and as an fp16 export.

fp16 keeps 11 significant bits against bf16's 8, so a drift that stays below half a bf16 ULP crosses half an fp16
ULP for most weights: if RL's sparsity is a precision readout (Gate III), the fp16 export of the same weights must
be much denser. Both exports come from one training (``toy_models.storage`` modes ``fp32_master`` and
``fp16_master`` share their arithmetic); the fp16 export is compared by value (``changed_mask_fp16``), never with
the bf16 relative probe, whose eta = 1e-3 lies above fp16's relative spacing.
"""

from __future__ import annotations

from verify.controls.exports import PUBLISHED_DRIFT, planted_export_sparsity
from verify.experiments.matched import Matched, matched
from verify.figures import exports as fig
from verify.measures.sparsity import export_sparsity
from verify.registry import Measurement, claim, negative, positive
from verify.rules import AtLeast, Interval
from verify.stats import over_seeds

DENSER = AtLeast("bf16 - fp16 export sparsity of the same run", 0.1, "a priori: a tenth of the weights")
PLANTED_SEEDS = (0, 1, 2)


def export_pair(run) -> tuple[float, float]:
    """(bf16-export sparsity, fp16-export sparsity) of one fp32-master run."""
    return export_sparsity(run, "fp32_master"), export_sparsity(run, "fp16_master")


def decide_export(pairs):
    """The rule on per-unit (bf16, fp16) sparsity pairs: the 95 % interval of bf16 - fp16 wholly above 0.1 ->
    REPRODUCED; wholly below -> NOT REPRODUCED; else INCONCLUSIVE. Returns the Outcome."""
    return DENSER.decide(Interval.of([b - f for b, f in pairs]))


@claim("precision.fp16_export", paper=("C6", "C9"),
       title="the same RL weights released in fp16 are much denser than in bf16 (Gate III's counterfactual)",
       paper_number=f"no run in the paper; at the published drift ({PUBLISHED_DRIFT} half-ULP) an i.i.d. simulation gives "
                    "bf16 sparsity about 0.75 against fp16 about 0.19",
       rule=f"{DENSER.text}; per seed, the profile's matched RL runs (fp32 master weights), the fp16 export compared by "
            "value; SFT at its customary rate (drift far above both half-ULPs) as the negative control",
       runs=matched)
def fp16_export(ctx, runs: Matched) -> Measurement:
    """precision.fp16_export: bf16 minus fp16 export sparsity of each matched RL run; planted published drift
    (positive) and customary SFT (negative) through the same rule."""
    rl = [export_pair(r) for r in runs.rl]
    sft = [export_pair(r) for r in runs.sft]
    planted = [planted_export_sparsity(s) for s in PLANTED_SEEDS]
    out = decide_export(rl)
    sft_out, planted_out = decide_export(sft), decide_export(planted)
    drift = over_seeds([r.regime["drift_ratio"] for r in runs.rl])
    col = lambda pairs, i: over_seeds([p[i] for p in pairs])  # noqa: E731
    figure = fig.export_sparsity_bars({"RL": ([b for b, _ in rl], [f for _, f in rl]),
                                       "SFT": ([b for b, _ in sft], [f for _, f in sft]),
                                       "planted": ([b for b, _ in planted], [f for _, f in planted])},
                                      DENSER.floor, (sum(b for b, _ in planted) / 3, sum(f for _, f in planted) / 3))
    return Measurement(
        out.status,
        f"RL: bf16 {col(rl, 0).text('.3f')} against fp16 {col(rl, 1).text('.3f')}, difference "
        f"{out.interval.text('+.3f')} at drift ratio {drift.text('.2f')}; SFT difference {sft_out.interval.text('+.3f')}; "
        f"planted published drift {planted_out.interval.text('+.3f')}",
        numbers={"rl_bf16_sparsity": col(rl, 0), "rl_fp16_sparsity": col(rl, 1), "rl_drift_ratio": drift,
                 "sft_bf16_sparsity": col(sft, 0), "sft_fp16_sparsity": col(sft, 1),
                 "sft_drift_ratio": over_seeds([r.regime["drift_ratio"] for r in runs.sft]),
                 "planted_bf16_sparsity": col(planted, 0), "planted_fp16_sparsity": col(planted, 1)},
        controls=[positive(f"planted i.i.d. drift of {PUBLISHED_DRIFT} half-ULP on a bf16 base", planted_out.status),
                  negative("SFT at its customary rate: drift above both half-ULPs, both exports dense", sft_out.status)],
        outcomes={"bf16 - fp16 export sparsity (RL)": out},
        descriptive={"bf16 - fp16 export sparsity (SFT, customary rate)": sft_out},
        figures=[figure],
        runs={"rl": list(runs.rl), "sft": list(runs.sft)},
        notes=["Both exports are computed from the same fp32 master snapshots (base and final): the bf16 one by "
               "nearest-even rounding and bit comparison, the fp16 one by numpy's float16 cast and value comparison "
               "(toy_models.storage, mode fp16_master). Parameters that never received a gradient count as unchanged "
               "in both.",
               "Gate III reads sparsity as the share of weights whose accumulated drift stayed below half an ULP; fp16's "
               "half-ULP is 8 times smaller than bf16's at the same magnitude, so a sub-ULP RL update must look dense "
               "in fp16. A run whose drift is many bf16 half-ULPs (SFT) is dense in both."],
    )
