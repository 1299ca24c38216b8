"""What a ``pair`` / ``pairs`` analysis means, in sentences a researcher can act on (terminal and report).

Each sentence puts one whole-model number beside the reference that gives it meaning: sparsity beside the
paper's RL and SFT bands and the fp16 export the fitted drift predicts; every overlap beside its
magnitude-matched null, with the verdict "explained by magnitude" when the excess range contains 0; every
energy beside the isotropic level; angles with how many are determined by the gap. Checks on the input come
first: an identical pair, a partial match by name, F32 -> bf16 rounding, skipped tensors.
"""

from __future__ import annotations

from verify.realckpt.options import ANGLE_GAP_FACTOR, INTRUDER_COS, MIN_MATCHED, PAPER_RL_BAND, PAPER_SFT_BAND

SMALL_EXCESS = 0.002
"""An excess beyond the null but smaller than this (in overlap or Jaccard units) is called small in the reading:
with hundreds of millions of weights the null's range is narrow enough to resolve effects of no practical size."""


def _pct(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f} %"


def _num(x, fmt: str = ".3g") -> str:
    return "n/a" if x is None else format(x, fmt)


def band(sparsity: float) -> str:
    """Where a whole-model bf16 sparsity lies against the paper's bands (claim C1)."""
    lo_rl, hi_rl = PAPER_RL_BAND
    lo_sft, hi_sft = PAPER_SFT_BAND
    if lo_rl <= sparsity <= hi_rl:
        return f"inside the paper's RL band ({_pct(lo_rl, 0)} to {_pct(hi_rl, 0)})"
    if lo_sft <= sparsity <= hi_sft:
        return f"inside the paper's SFT band ({_pct(lo_sft, 1)} to {_pct(hi_sft, 1)})"
    if hi_sft < sparsity < lo_rl:
        return f"between the paper's SFT ({_pct(lo_sft, 1)} to {_pct(hi_sft, 1)}) and RL ({_pct(lo_rl, 0)} to {_pct(hi_rl, 0)}) bands"
    return (f"above the paper's RL band ({_pct(lo_rl, 0)} to {_pct(hi_rl, 0)})" if sparsity > hi_rl
            else f"below the paper's SFT band ({_pct(lo_sft, 1)} to {_pct(hi_sft, 1)})")


def verdict(s: dict, small: float | None = SMALL_EXCESS) -> str:
    """'explained by magnitude' when the excess range contains 0, else which way it goes beyond the null (called
    small below ``small``, for statistics in overlap units)."""
    if s.get("beyond_null") is None:
        return "undefined (nothing changed)"
    if not s["beyond_null"]:
        return "explained by magnitude"
    text = "beyond magnitude: more than the null" if s["excess"] > 0 else "beyond magnitude: less than the null"
    return text + (f", but small (|excess| < {small:g})" if small is not None and abs(s["excess"]) < small else "")


def _overlap(label: str, s: dict, alpha: float) -> str:
    return (f"{label} overlap of the changed set {_num(s['observed'], '.4f')} (random level alpha = {alpha:g}, magnitude null "
            f"{_num(s['null'], '.4f')}): excess {_num(s['excess'], '+.4f')} [{_num(s['excess_low'], '+.4f')}, "
            f"{_num(s['excess_high'], '+.4f')}]: {verdict(s)}.")


def input_lines(summary: dict) -> list[str]:
    """Sentences about the input: identical, partial, rounding, skipped / missing / mismatched tensors."""
    lines = []
    if summary["partial"]:
        lines.append(f"WARNING: only {_pct(summary['matched_share'], 1)} of the parameters were matched by name (fewer than "
                     f"{_pct(MIN_MATCHED, 0)}): different naming schemes or different models? Every number below covers the "
                     "matched part only; rerun with --allow-partial to accept it.")
    rounded = summary["rounded_from_f32"]
    if rounded["base"] or rounded["tuned"]:
        parts = [f"{side} {len(v)} tensors" for side, v in rounded.items() if v]
        lines.append(f"Rounded from F32 (or F16 / F64) to bf16 (nearest even) before the bf16 probes, as a bf16 export would: "
                     f"{', '.join(parts)}.")
    else:
        lines.append("Every compared tensor is stored as BF16 on both sides: nothing was rounded.")
    lists = [(summary["skipped"], "skipped (not float weights)"), (summary["missing"], "missing from the tuned checkpoint"),
             (summary["extra"], "extra in the tuned checkpoint"), (summary["mismatched"], "shape-mismatched")]
    notes = [f"{len(items)} {what}" for items, what in lists if items]
    if notes:
        lines.append("Tensors not compared: " + "; ".join(notes) + " (listed in pair.md / pair.json).")
    return lines


def pair_reading(summary: dict) -> list[str]:
    """The opening of pair.md and of the terminal output (module docstring)."""
    opts = summary["options"]
    head = [f"Compared {summary['params']:,} parameters in {len(summary['tensors'])} tensors "
            f"({_pct(summary['matched_share'], 1)} of the parameters matched by name)."]
    if summary["identical"]:
        return head + ["identical: every compared tensor of the tuned checkpoint equals the base bit for bit."] + input_lines(summary)
    sp = summary["sparsity_bf16"]
    lines = head + [f"bf16 update sparsity {_pct(sp)}: {band(sp)}."]
    null = summary.get("null")
    if null:
        fp = null.get("fp16_sparsity_predicted")
        drift = summary.get("drift_half_ulps")
        text = (f"Magnitude-matched null: a Gaussian drift per ULP stratum (median {_num(drift, '.2g')} half-ULPs) reproduces "
                "that sparsity by construction")
        if fp:
            text += (f"; one drift for all strata (fitted by maximum likelihood) would leave {_pct(fp['sparsity'])} "
                     f"[{_pct(fp['low'])}, {_pct(fp['high'])}] of the weights unchanged in an fp16 export")
            if fp.get("measured") is not None:
                text += f" (measured on this F32 checkpoint: {_pct(fp['measured'])})"
            if sp and fp["sparsity"] < 0.5 * sp:
                text += ": most of the bf16 sparsity is the bf16 grid (Gate III), not an untouched weight set"
        lines.append(text + ".")
        for key, label in (("principal_overlap", "Principal-mask"), ("low_mag_overlap", "Low-magnitude-mask")):
            if key in null:
                lines.append(_overlap(label, null[key], opts["alpha"]))
        sweep = [e for e in summary.get("energy_sweep", []) if e["matrices"]]
        if sweep:
            ratios = " / ".join(_num(e["median_ratio"], ".3g") for e in sweep)
            ks = " / ".join(str(e["k"]) for e in sweep)
            above = " / ".join(f"{e['above_isotropic']}" for e in sweep)
            below = " / ".join(f"{e['below_isotropic']}" for e in sweep)
            lines.append(f"Principal energy of dW at k = {ks}: median {ratios} x the isotropic level k^2/(mn); above the "
                         f"isotropic 95 % range in {above} and below it in {below} of {sweep[0]['matrices']} matrices "
                         "(ratios above 1 mean the update leans into the base's top subspaces, below 1 that it avoids them).")
        st = summary.get("structure", {})
        if st.get("matrices"):
            lines.append(f"Spectral residual ||sigma(W1) - sigma(W0)|| / ||dW||_F: median {_num(st['median_spectral_residual_over_isotropic'])} "
                         "x its isotropic level 1/sqrt(max(m, n)).")
            lines.append(f"dW: median top-1 share of ||dW||_F^2 {_pct(st['median_dw_top1_share'])} "
                         f"({_num(st['median_dw_top1_over_isotropic'])} x an isotropic update's), median rank for 90 % of it "
                         f"{_pct(st['median_dw_rank90_share'], 0)} of min(m, n); {st['intruders']} intruder dimensions in all "
                         f"(tuned top-k vectors with largest |cos| < {INTRUDER_COS} to the base's top-K).")
            lines.append(f"Principal angles at k = {opts['rank']}: determined in {st['angles_determined']} of {st['matrices']} matrices "
                         f"(gap sigma_k - sigma_k+1 of W0 above {ANGLE_GAP_FACTOR:g} ||dW||_2); the others are flagged in the table: "
                         "their angle is not determined by the update.")
    return lines + input_lines(summary)


def pairs_reading(summary: dict) -> list[str]:
    """The opening of pairs.md: changes between consecutive checkpoints and their trend, C4, Jaccard and stripes."""
    lines = []
    c = summary["consecutive"]
    shares = ", ".join(_pct(x) for x in c["changed_share"])
    lines.append(f"If the tuned checkpoints are one run's, in step order (as given on the command line): bf16 weights "
                 f"changed from the base to the first and then between consecutive checkpoints: {shares} "
                 "(published large-scale RL sees about 1 to 2 % per step or checkpoint).")
    t = c.get("trend")
    if t:
        lines.append(f"Trend of that share: {100 * t['slope']:+.3f} percentage points per checkpoint "
                     f"[{100 * t['low']:+.3f}, {100 * t['high']:+.3f}].")
    k = c.get("kept_share", {})
    if k.get("null") is not None:
        lines.append(f"C4: {_pct(k['observed'])} of the first checkpoint's changed set is still changed in the last, magnitude "
                     f"null {_pct(k['null'])}: excess {_num(k['excess'], '+.4f')} [{_num(k['excess_low'], '+.4f')}, "
                     f"{_num(k['excess_high'], '+.4f')}]: {verdict(k)}.")
    for pair, s in summary.get("jaccard", {}).items():
        lines.append(f"C3: Jaccard of runs {pair} {_num(s['observed'], '.4f')}, magnitude null {_num(s['null'], '.4f')}: excess "
                     f"{_num(s['excess'], '+.4f')} [{_num(s['excess_low'], '+.4f')}, {_num(s['excess_high'], '+.4f')}]: {verdict(s)}.")
    for kind, axes in summary.get("stripes", {}).items():
        parts = [f"{axis} {verdict(s, None)} (excess {_num(s['excess'], '+.2e')})" for axis, s in axes.items()]
        lines.append(f"C3 stripes of {kind}: " + "; ".join(parts) + ".")
    return lines
