"""Adapter claims (docs/science.md C15, C16; section 5, PEFT for RLVR): PiSSA brings no gain over LoRA in RLVR
and collapses sooner at the higher learning rates adapters need (``adapters.grid``), and low-rank adapters, rank 1
included, can match full RL because RL's update is small and concentrated (``adapters.approximation``).

The grid. RL with ``lora``, ``pissa``, ``milora`` and the candidate ``offprincipal`` (toy_models/adapters.py), every
one on all six block kernels with alpha = 2 rank (s = alpha / rank = 2 for every rank and kind, so the three
SVD-free merges of one rank share one compiled step) and ``offprincipal`` projected off the top k = d_model / 8
singular subspaces (the tiny base: k = 4, the ``K`` of the Gate II claims). Ranks are fractions of min(in, out) of
the targeted matrices, which is d_model on these bases: 1/16, 1/4 and 1/2 give 2, 8 and 16 on the tiny base
(d_model 32) and 4, 16, 32 on the small base; which fractions a profile runs is in its ``Profile.adapters``
(``verify.knobs.AdapterGrid``). Every cell runs a fixed number of steps (gain at equal steps, ``matched=False``) over a learning-rate grid of >= 5 rates spanning
2 decades, beside full RL over its own small grid, and with ``train.on_nan="stop"`` so that a run that hits
NaN/Inf ends at its last good step with reason "diverged" (a collapse) instead of raising.

Per cell and seed: the held-out gain at the last step; the first evaluation step at which the gain reached the
profile's target gain; collapse (``verify.measures.training.collapse_point``) and its onset step; the exact KL to
the base on the probe set; the normalised spectral shift and the largest top-k principal angle of the merged
block matrices (fp32 master, ``verify.measures.spectra.spectral_drift``). The runs are the experiment
``verify.experiments.adapters``; the table of records is ``verify.measures.adapter_grid.Grid``.

The same grid with SFT on demonstrations (``profile.sft``) is reported, not decided: the paper's story (PiSSA
trains the principal directions that SFT moves) predicts that PiSSA helps SFT more than RL.

Rules (docs/science.md section 6). adapters.grid: "no gain over LoRA" is an equivalence (``Within``: the 90 %
interval of PiSSA - LoRA best gain over (rank, seed) pairs inside +-0.05) and "collapses at a lower rate" a one-sided
exact sign test over the pairs whose lowest collapsing rates differ (``SignTest``, p < 0.05); the claim needs both
(``all_of``). adapters.approximation: non-inferiority (``AtLeast``: the 95 % interval of rank-1 LoRA - full RL gain
wholly above -0.05).

Controls. adapters.grid: planted per-pair inputs that must flip the rule both ways, and a null pair from the real grid
(LoRA against LoRA of the next seed in PiSSA's place), which must not come out REPRODUCED. adapters.approximation:
planted adapter and full gains at and far below the margin.

Views: the fp32 master weights for every continuous quantity; the adapters are merged into full parameters by
the trainer, so every run's snapshot is a full checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from verify.controls.numbers import null_pairs, planted_grid, planted_match
from verify.experiments.adapters import FULL, approximation as approximation_runs, grid as grid_runs, offprincipal_k, rank_limit, ranks
from verify.figures import adapters as fig
from verify.measures.adapter_grid import Grid, arm_label, cell_numbers
from verify.measures.spectra import ISOTROPIC_DRAWS, energy_curve, isotropic_curve, ranks_for_energy
from verify.measures.training import COLLAPSE_DROP
from verify.measures.weights import block_pairs
from verify.profiles import PROFILES
from verify.registry import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Measurement, claim, negative, positive
from verify.rules import SOURCES, UNDERPOWERED, AtLeast, Interval, Outcome, Within, all_of

MATCH_MARGIN = 0.05  # "reaches full RL's gain": the adapter's gain is at most this far below (5 points of accuracy)
ENERGY_RANKS = (1, 2, 4, 8, 16, 32)  # ranks r of the energy-share curve (capped at min(m, n))


@dataclass(frozen=True)
class SignTest:
    """Presence by a one-sided exact sign test (``scipy.stats.binomtest``) over discordant pairs: of the n pairs in
    which the two methods differ, k favour the claim; P(X >= k | n, 1/2) < ``alpha`` -> REPRODUCED; the same test
    for the other side (n - k of n) below ``alpha`` -> NOT REPRODUCED; else INCONCLUSIVE, 'underpowered' when even
    n of n could not reach ``alpha`` (1/2^n >= alpha: fewer than 5 discordant pairs at 5 %). The outcome's value is
    the one-sided p."""

    statistic: str
    alpha: float
    source: str

    def __post_init__(self):
        if not self.source.startswith(SOURCES):
            raise ValueError(f"A threshold's source must start with one of {SOURCES}, got {self.source!r}.")

    @property
    def text(self) -> str:
        """The rule in words, for the report."""
        return (f"{self.statistic}: one-sided exact sign test over discordant pairs, p < {self.alpha:g} ({self.source}); "
                f"the other side's p < {self.alpha:g} -> NOT REPRODUCED")

    def decide(self, favour: int, against: int) -> Outcome:
        """The outcome for ``favour`` pairs on the claim's side and ``against`` on the other (ties left out)."""
        n = favour + against
        p = binomtest(favour, n, 0.5, alternative="greater").pvalue if n else 1.0
        p_other = binomtest(against, n, 0.5, alternative="greater").pvalue if n else 1.0
        status = REPRODUCED if p < self.alpha else NOT_REPRODUCED if p_other < self.alpha else INCONCLUSIVE
        quals = (UNDERPOWERED,) if status == INCONCLUSIVE and 0.5 ** n >= self.alpha else ()
        return Outcome(status, f"{self.statistic}: p ({favour} of {n} discordant pairs)", Interval(float(p), 0.0, 0.0, (float(p),)),
                       "test", self.alpha, self.source, quals)


NO_GAIN = Within("PiSSA - LoRA best gain per (rank, seed) pair", MATCH_MARGIN, "a priori")
COLLAPSES_SOONER = SignTest("PiSSA's lowest collapsing rate below LoRA's, per (rank, seed) pair", 0.05, "a priori")
MATCHES_FULL = AtLeast("rank-1 LoRA - full RL best gain per seed (non-inferiority)", -MATCH_MARGIN, "a priori")


def decide_grid(lora_best, pissa_best, lora_collapse, pissa_collapse) -> tuple[str, Outcome, Outcome, dict]:
    """C15 on per-(rank, seed) numbers: ``*_best`` the gain at each method's best rate, ``*_collapse`` the
    ``collapse_key`` of each (its lowest collapsing rate first). ``NO_GAIN`` on PiSSA - LoRA gain and
    ``COLLAPSES_SOONER`` on the pairs whose lowest collapsing rates differ; status ``all_of`` both. Returns
    (status, no-gain outcome, collapse outcome, {pissa_first, lora_first, pairs})."""
    diff = Interval.of(np.asarray(pissa_best, float) - np.asarray(lora_best, float))
    pissa_first = sum(p[0] < q[0] for p, q in zip(pissa_collapse, lora_collapse))
    lora_first = sum(q[0] < p[0] for p, q in zip(pissa_collapse, lora_collapse))
    no_gain, sooner = NO_GAIN.decide(diff), COLLAPSES_SOONER.decide(pissa_first, lora_first)
    return all_of(no_gain, sooner), no_gain, sooner, {"pissa_first": pissa_first, "lora_first": lora_first,
                                                     "pairs": len(lora_best)}


def decide_match(adapter_gains, full_gains, rule: AtLeast = MATCHES_FULL) -> Outcome:
    """C16: per-seed adapter - full gain (each at its best rate) by ``rule`` (non-inferiority: the 95 % interval
    wholly above -``MATCH_MARGIN`` -> REPRODUCED; wholly below -> NOT REPRODUCED; else INCONCLUSIVE)."""
    return rule.decide(Interval.of(np.asarray(adapter_gains, float) - np.asarray(full_gains, float)))


def edge_notes(grid, best: dict) -> list[str]:
    """One sentence per arm whose best rate is the lowest or highest rate of its grid (a best rate at an edge may
    not be the arm's optimum: the grid did not bracket it); ``best`` maps (kind, rank) to (rate, gains)."""
    out = []
    for (kind, rank), (lr, _) in best.items():
        lrs = grid.lrs(kind, rank)
        if len(lrs) > 1 and lr in (lrs[0], lrs[-1]):
            side = "lowest" if lr == lrs[0] else "highest"
            out.append(f"{grid.method.upper()} {arm_label(kind, rank)}: best rate {lr:g} is the {side} of its grid "
                       f"({', '.join(f'{x:g}' for x in lrs)}); its optimum may lie beyond it.")
    return out


def _fmt_lr(lr) -> str:
    return "-" if lr is None or not math.isfinite(lr) else f"{lr:g}"


def _grid_rule() -> str:
    by_profile = "; ".join(f"{name}: ranks x{'/'.join(f'{f:.3g}' for f in k.rank_fractions)} of min(in, out), kinds "
                           f"{'/'.join(k.kinds)}, rates {'/'.join(f'{x:g}' for x in k.lrs)}, full RL "
                           f"{'/'.join(f'{x:g}' for x in k.full_lrs)}, {k.steps} steps, {k.seeds} seeds"
                           for name, k in ((n, q.adapter_grid) for n, q in PROFILES.items() if q.adapter_grid is not None))
    return (f"RL grid at equal steps (alpha = 2 rank, all block kernels; {by_profile}; other profiles: AdapterGrid.derived). "
            f"Best rate of each arm = highest seed-mean held-out gain. Collapse = NaN, or held-out gain at the last "
            f"evaluation <= -{COLLAPSE_DROP}, or mean training reward of the last {{eval_every}}-step window <= base "
            f"accuracy - {COLLAPSE_DROP}. No gain over LoRA: {NO_GAIN.text}. Collapses at a lower rate: "
            f"{COLLAPSES_SOONER.text} (a pair is discordant when the two lowest collapsing rates differ; never collapsing "
            "ranks above every rate). REPRODUCED iff both; NOT REPRODUCED iff either is NOT REPRODUCED; else "
            "INCONCLUSIVE. The same grid with SFT is reported (PiSSA - LoRA in SFT minus in RL), not decided")


def _js(values) -> dict:
    """The per-unit values' t-interval as a plain dict (report.json)."""
    return Interval.of(values).to_json()


@claim("adapters.grid", paper=("C15",), title="PiSSA brings no gain over LoRA in RLVR and collapses at lower learning rates",
       paper_number="no gain over LoRA; collapses sooner at high lr (ranks 8-64, lr 1e-5 to 1e-4; figures only). PEFT for "
                    "RLVR (1.5B): full 44.9, LoRA 42.5, MiLoRA 18.0, PiSSA 0.2",
       rule=_grid_rule(), runs=grid_runs, sweep=True)
def grid(ctx, runs) -> Measurement:
    """adapters.grid (C15): the RL adapter grid decided PiSSA against LoRA; the SFT grid reported beside it."""
    p = ctx.profile
    rl, sft = Grid(ctx, "rl", runs["rl"]), Grid(ctx, "sft", runs["sft"])
    rks = ranks(p)
    best = {arm: rl.best(*arm) for arm in rl.arms}
    per_rank = {r: np.asarray(best[("pissa", r)][1]) - np.asarray(best[("lora", r)][1]) for r in rks}
    pairs = {"lora_best": [g for r in rks for g in best[("lora", r)][1]],
             "pissa_best": [g for r in rks for g in best[("pissa", r)][1]],
             "lora_collapse": [k for r in rks for k in rl.collapse_keys("lora", r)],
             "pissa_collapse": [k for r in rks for k in rl.collapse_keys("pissa", r)]}
    status, no_gain, sooner, d = decide_grid(pairs["lora_best"], pairs["pissa_best"], pairs["lora_collapse"],
                                             pairs["pissa_collapse"])
    null_status, null_gain, null_sooner, null = decide_grid(*null_pairs(rl, rks))
    pos = decide_grid(*planted_grid(0.0, -1))[0]
    neg = decide_grid(*planted_grid(0.1, +5, seed=1))[0]

    # SFT: PiSSA - LoRA at each one's best rate, and the same difference in SFT minus in RL, per (rank, seed), at the
    # ranks both grids ran (reported, not decided)
    sft_best = {a: sft.best(*a) for a in sft.arms}
    sft_diff, did = [], []
    for r in rks:
        if ("lora", r) in sft_best and ("pissa", r) in sft_best:
            dd = np.asarray(sft_best[("pissa", r)][1]) - np.asarray(sft_best[("lora", r)][1])
            sft_diff += dd.tolist()
            did += (dd - per_rank[r]).tolist()
    sft_diff_i, did_i = Interval.of(sft_diff), Interval.of(did)

    full_lr, full_g = best[(FULL, 0)]
    numbers = {"pissa_minus_lora_gain": no_gain.interval.to_json(), "pissa_collapses_first": float(d["pissa_first"]),
               "lora_collapses_first": float(d["lora_first"]), "pairs": float(d["pairs"]),
               "collapse_sign_test_p": sooner.interval.mean,
               "null_pair_gain_diff": null_gain.interval.to_json(),
               "null_pair_first_counts": f"{null['pissa_first']} vs {null['lora_first']} (p {null_sooner.interval.mean:.3g})",
               "full_best_lr": full_lr, "full_best_gain": _js(full_g),
               "sft_pissa_minus_lora_gain": sft_diff_i.to_json(), "sft_minus_rl_pissa_advantage": did_i.to_json(),
               "ranks": ", ".join(str(r) for r in rks), "steps_rl": float(p.adapters.steps), "steps_sft": float(p.adapters.sft_steps)}
    for (kind, r), (lr, g) in best.items():
        if kind != FULL:
            numbers[f"rl/{kind}/r{r}/best_lr"] = lr
            numbers[f"rl/{kind}/r{r}/best_gain"] = _js(g)
            cl = [k[0] for k in rl.collapse_keys(kind, r)]
            numbers[f"rl/{kind}/r{r}/lowest_collapse_lr_per_seed"] = ", ".join(_fmt_lr(x) for x in cl)
    for (kind, r), (lr, g) in sft_best.items():
        tag = f"sft/{kind}" + (f"/r{r}" if kind != FULL else "")
        numbers[f"{tag}/best_lr"] = lr
        numbers[f"{tag}/best_gain"] = _js(g)
    numbers |= cell_numbers(rl) | cell_numbers(sft)

    headline = (f"RL: PiSSA - LoRA best gain {no_gain.interval.text('+.3f')} (no gain: {no_gain.status}; best lr "
                + ", ".join(f"r{r}: PiSSA {best[('pissa', r)][0]:g} / LoRA {best[('lora', r)][0]:g}" for r in rks)
                + f"); lower collapsing rate: PiSSA in {d['pissa_first']}, LoRA in {d['lora_first']} of {d['pairs']} "
                f"(rank, seed) pairs, sign test p {sooner.interval.mean:.3g} ({sooner.status}); full RL best "
                f"{Interval.of(full_g).text('.3f')} at lr {full_lr:g}. SFT: PiSSA - LoRA {sft_diff_i.text('+.3f')}, "
                f"in SFT minus in RL {did_i.text('+.3f')}")
    k = p.adapters
    return Measurement(
        status, headline, numbers=numbers,
        controls=[positive("planted: equal gains, PiSSA collapsing one rate lower in all 6 pairs", pos),
                  negative("null pair: LoRA of the next seed in PiSSA's place (real grid)", null_status),
                  negative("planted: PiSSA 0.1 above LoRA and never collapsing", neg)],
        outcomes={"no gain over LoRA": no_gain, "PiSSA collapses at a lower rate": sooner},
        figures=[fig.gain_against_lr(rl, f"C15: RL gain vs learning rate ({k.steps} steps, {len(rl.seeds)} seeds)"),
                 fig.collapse_map(rl, "C15: RL collapse map"),
                 fig.pissa_minus_lora(per_rank, no_gain.interval, MATCH_MARGIN,
                                      f"lower collapsing rate: PiSSA {d['pissa_first']}, LoRA {d['lora_first']} of "
                                      f"{d['pairs']} pairs, one-sided sign test p {sooner.interval.mean:.3g} (rule: < "
                                      f"{COLLAPSES_SOONER.alpha:g})"),
                 fig.geometry_against_lr(rl, "C15: distance from the base of the merged RL weights (fp32 master, block matrices)"),
                 fig.gain_against_lr(sft, f"C15 context: SFT gain vs learning rate ({k.sft_steps} steps, {len(sft.seeds)} seeds)")],
        runs={"sweep: rl adapter grid": rl.all_runs(), "sweep: sft adapter grid": sft.all_runs()},
        notes=[f"Ranks {list(rks)} (SFT: {list(ranks(p, 'sft'))}) = fractions {list(k.rank_fractions)} (SFT: "
               f"{list(k.sft_rank_fractions)}) of min(in, out) = {rank_limit(p.base.model)}; alpha = "
               f"2 rank (s = 2); offprincipal k = {offprincipal_k(p.base.model)}; all six block kernels (embeddings and "
               "unembedding frozen under every adapter). Full RL's best rate is chosen by the same rule as every arm's.",
               f"Collapse: NaN/Inf (the trainer's on_nan='stop' records it), or the held-out gain at the last evaluation <= "
               f"-{COLLAPSE_DROP}, or the mean training reward over the last complete window of eval_every steps <= base "
               f"accuracy - {COLLAPSE_DROP}; onset = first evaluation (window end) from which it stays below. SFT cells "
               "count NaN only: SFT on demonstrations first falls below the base in every run while it learns the "
               "scratchpad format.",
               "Units of both tests: (rank, seed) pairs (3 ranks x 3 seeds on quick: at most 9); the sign test cannot "
               "reproduce on fewer than 5 discordant pairs (5 of 5: p = 1/32; 4 of 4: p = 1/16; 7 of 8: p = 0.035).",
               "KL: exact token-mean KL(pi || base) on the probe set at the last step; NSS and angle: fp32 master merged "
               "block matrices against the base, top-4 subspaces (verify.measures.spectra.spectral_drift).",
               f"Steps to target: first evaluation (every {p.eval_every} steps) with gain >= {p.target_gain}; numbers "
               "'<cell>/reached_target' and '<cell>/steps_to_target_median'."] + edge_notes(rl, best) + edge_notes(sft, sft_best),
    )


@claim("adapters.approximation", paper=("C16",), title="rank-1 LoRA reaches full RL's gain at a scaled learning rate",
       paper_number="low-rank adapters, rank 1 included, can match full RL over a short run (LoRA Without Regret: at "
                    "about 10x the full-FT lr); RL updates nearly full rank (Mukherjee et al.: 99.2-99.8 %)",
       rule=f"RL at equal steps, both at their best rate (highest seed-mean gain) over the grid's rates: {MATCHES_FULL.text} "
            "(wholly below -> NOT REPRODUCED). Reported: share of |dW|_F^2 of full RL's fp32 master update (best rate) in "
            "its top-r singular directions per block matrix against the isotropic level, the lr ratio rank-1 / full, and "
            "the grid ranks' LoRA against full by the same rule",
       runs=approximation_runs, sweep=True)
def approximation(ctx, runs) -> Measurement:
    """adapters.approximation (C16): rank-r energy share of full RL's update; rank-1 LoRA's gain against full RL's."""
    p = ctx.profile
    rl = Grid(ctx, "rl", runs["rl"])
    full_lr, full_g = rl.best(FULL, 0)
    r1_lr, r1_g = rl.best("lora", 1)
    out = decide_match(r1_g, full_g)
    pos = decide_match(*planted_match(0.0)).status
    neg = decide_match(*planted_match(-4 * MATCH_MARGIN, seed=1)).status

    best_runs = [rl.runs[(FULL, 0, full_lr, s)] for s in rl.seeds]
    pairs = [block_pairs(ctx, r, master=True) for r in best_runs]
    smallest = min(min(W0.shape) for W0, _ in pairs[0].values())
    rs = tuple(r for r in ENERGY_RANKS if r <= smallest)
    curves = [energy_curve(pr, rs) for pr in pairs]
    iso = isotropic_curve(pairs[0], rs)
    need90 = [ranks_for_energy(pr) for pr in pairs]
    numbers = {"rank1_minus_full_gain": out.interval.to_json(), "full_best_lr": full_lr, "full_best_gain": _js(full_g),
               "rank1_best_lr": r1_lr, "rank1_best_gain": _js(r1_g), "rank1_over_full_lr": r1_lr / full_lr,
               "ranks_for_90pct_energy": _js(need90)}
    for r in rs:
        numbers[f"energy_share_top{r}"] = _js([c[r] for c in curves])
        numbers[f"isotropic_share_top{r}"] = iso[r]
    others = {}
    for r in ranks(p):
        if r != 1:
            lr_r, g_r = rl.best("lora", r)
            rule = AtLeast(f"rank-{r} LoRA - full RL best gain per seed (non-inferiority)", -MATCH_MARGIN, "a priori")
            others[f"rank-{r} LoRA against full RL"] = decide_match(g_r, full_g, rule)
            numbers[f"lora_r{r}_minus_full_gain"] = others[f"rank-{r} LoRA against full RL"].interval.to_json()
            numbers[f"lora_r{r}_best_lr"] = lr_r

    other = [("lora", r, dict(color=f"C{2 + i}", ls=":")) for i, r in enumerate(x for x in ranks(p) if x != 1)]
    figures = [fig.energy_share_curves(rs, curves, iso, rl.seeds, full_lr),
               fig.rank1_against_full(rl, [(FULL, 0, dict(color="k", ls="--")), ("lora", 1, dict(color="C0"))] + other,
                                      full_lr, r1_lr, p.adapters.steps, float(np.mean(full_g)) - MATCH_MARGIN)]

    top1 = Interval.of([c[rs[0]] for c in curves])
    return Measurement(
        out.status,
        f"rank-1 LoRA - full RL gain {out.interval.text('+.3f')} (rank-1 {Interval.of(r1_g).text('.3f')} at lr {r1_lr:g}, "
        f"full {Interval.of(full_g).text('.3f')} at lr {full_lr:g}: ratio {r1_lr / full_lr:.3g}); full RL's update: top-1 "
        f"direction holds {top1.text('.3f')} of |dW|_F^2 (isotropic {iso[rs[0]]:.3f}), 90 % needs rank "
        f"{Interval.of(need90).text('.3g')}",
        numbers=numbers,
        controls=[positive("planted: adapter gains equal to full within noise 0.01", pos),
                  negative(f"planted: adapter gains {4 * MATCH_MARGIN} below full", neg)],
        outcomes={"rank-1 LoRA against full RL": out}, descriptive=others,
        figures=figures, runs={"sweep: rl adapter grid": rl.all_runs()},
        notes=[f"Energy share = sum of the top-r squared singular values of dW / |dW|_F^2 (theory.spectral."
               f"top_k_energy_share, fp64), dW = fp32 master final - base of full RL at its best rate, per block matrix, "
               f"then the mean over matrices; the isotropic level is the mean over {ISOTROPIC_DRAWS} Gaussian matrices of "
               "each shape. This is the best any rank-r update could capture (Eckart-Young); LoRA does not get those "
               "directions for free.",
               "LoRA parametrisation: alpha = 2 rank (s = 2 at every rank), LoRA Without Regret uses alpha = 32 (s = 32 / "
               "rank), so its 10x lr ratio maps onto a larger ratio here at rank 1 (Adam moves B by about lr per step and "
               "the update by s times that).",
               f"Non-inferiority margin {MATCH_MARGIN} of held-out accuracy (half the quick and full target gain), a priori."]
        + edge_notes(rl, {(FULL, 0): (full_lr, full_g), ("lora", 1): (r1_lr, r1_g)}),
    )
