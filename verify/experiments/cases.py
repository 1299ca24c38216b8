"""The case studies' run sets: the RL runs from one base that C3 compares, the fixed-length runs with snapshots
of C4, the edited-base runs of C12 and the masked runs of C14.

The fixed-length runs (``rl_run``, ``sft_run``) run ``Profile.cases`` steps with no matched stop and snapshots
along the way; they are shared by C4, C12 (the unedited references) and C14 (the dense run).
"""

from __future__ import annotations

import math

from toy_models.finetune import RunSpec
from toy_models.interventions import EditConfig
from toy_models.masks import MaskConfig
from toy_models.transformer import flat_params, init_params
from verify.experiments.matched import matched, random_init
from verify.knobs import round_lr
from verify.profiles import get_profile

DATA_SEED = 1000  # data order of the "data order" run (the others derive it from their seed)
TASK_MIXES = (("add", "mod"), ("sort", "rev"))


def case_seeds(p) -> tuple[int, ...]:
    """Seeds of the case-study runs: the profile's first ``p.cases.seeds`` seeds (more if it has fewer)."""
    n = p.cases.seeds
    return tuple(p.seeds[:n]) if len(p.seeds) >= n else tuple(range(n))


def fixed_spec(p, method: str, seed: int, *, steps: int, eval_every: int, snapshot_every: int | None = None,
               **kw) -> RunSpec:
    """A run of ``steps`` steps (no matched stop), evaluated every ``eval_every`` steps, with snapshots every
    ``snapshot_every`` steps. Resume checkpoints every profile eval_every steps keep the compiled segment as long
    as the profile's main runs', so these runs share their compiled step (the segment length is static)."""
    snaps = tuple(range(snapshot_every, steps + 1, snapshot_every)) if snapshot_every else ()
    spec = p.spec(method, seed, steps=steps, matched=False, snapshot_steps=snaps, **kw)
    return spec.replace(train__eval_every=eval_every, train__checkpoint_every=p.eval_every)


def rl_run(p, seed: int, *, detailed: bool = True, **kw) -> RunSpec:
    """The case studies' fixed-length RL run (grpo_kl, fp32_master, the profile's RL lr unless ``kw`` says
    otherwise). ``detailed``: snapshots and the accuracy curve (C4, C14, and the unedited references of C12);
    otherwise one evaluation at the end (what a run only compared by its final mask needs)."""
    k = p.cases
    return fixed_spec(p, "rl", seed, steps=k.rl_steps, eval_every=k.curve_every if detailed else k.rl_steps,
                      snapshot_every=k.rl_snapshot_every if detailed else None, **kw)


def sft_run(p, seed: int) -> RunSpec:
    """The case studies' fixed-length SFT run with snapshots (fp32_master, the profile's SFT lr)."""
    k = p.cases
    return fixed_spec(p, "sft", seed, steps=k.sft_steps, eval_every=k.sft_steps, snapshot_every=k.sft_snapshot_every)


# ----------------------------------------------------------------------------------------------
# C3 and C4


def variant_seeds(p) -> tuple[int, ...]:
    """Seeds of C3's variant runs (data order, the two task mixes, dapo_clip): the ones after the profile's seeds,
    so every run of the set differs from every other in its seed (rollouts, problem pool, data order) as well as in
    its data or algorithm, as the paper's runs do."""
    first = max(p.seeds) + 1
    return tuple(range(first, first + 2 + len(TASK_MIXES)))


def rl_set(p) -> dict[str, RunSpec]:
    """The RL runs from one base compared by C3 (label: spec), all the profile's matched runs (to its target gain,
    so every run has learned as much): the main runs of every profile seed (``p.rl``, shared with the core
    claims), and one run each, on its own seed (``variant_seeds``), with another data order, each task mix (a pool
    of as many problems as the 4-task runs) and the dapo_clip algorithm; >= 5 runs, no two sharing a seed."""
    order, *mix_seeds, dapo_seed = variant_seeds(p)
    out = {f"seed {s}": p.rl(s) for s in p.seeds}
    out[f"data order (seed {order})"] = p.rl(order, data_seed=DATA_SEED)
    n_tasks = len(p.base.corpus.tasks)
    for mix, s in zip(TASK_MIXES, mix_seeds):  # the same pool size as the 4-task runs: the compiled step is shared
        out[f"tasks {'+'.join(mix)} (seed {s})"] = p.rl(s, tasks=mix).replace(
            train__pool_per_task=p.pool_per_task * n_tasks // len(mix))
    out[f"dapo_clip (seed {dapo_seed})"] = p.rl(dapo_seed, preset="dapo_clip")
    return out


def random_init_runs(p) -> tuple[RunSpec, ...]:
    """RL from the random init read by C3 beside the pretrained runs: the runs of control.random_base (every profile
    seed, ``p.random_init_steps`` steps), so both claims read the same runs."""
    return tuple(s.replace(train__max_steps=p.random_init_steps) for s in random_init(p, p.seeds))


def consistency(p) -> dict:
    """C3's runs: {'rl': ``rl_set``, 'sft': the matched SFT runs, 'random_init': ``random_init_runs``}."""
    return {"rl": rl_set(p), "sft": matched(p).sft, "random_init": random_init_runs(p)}


def temporal(p) -> dict[str, tuple[RunSpec, ...]]:
    """C4's runs: the fixed-length RL and SFT runs with snapshots of every case seed."""
    seeds = case_seeds(p)
    return {"rl": tuple(rl_run(p, s) for s in seeds), "sft": tuple(sft_run(p, s) for s in seeds)}


# ----------------------------------------------------------------------------------------------
# C12: edited bases

EDIT_KINDS = {"adamw": ("rotate_vo", "permute_heads", "permute_mlp"), "sgd": ("rotate_vo", "permute_heads")}
EDIT_SEED = 0  # draws the rotation / permutation
EDITED_SEEDS = 3  # edited runs per (optimizer, kind): the first case seeds (no empirical claim on 2 seeds)
UNUSED_SHARE = 0.09  # parameters that never receive a gradient (docs/science.md, 'Regime'), for the fallback


def sgd_lr(p) -> float:
    """SGD learning rate whose first update has the norm of AdamW's at ``p.rl_lr`` (rule fixed before any SGD
    run), two significant digits. Adam's first step moves every coordinate with a nonzero gradient by lr
    (m/sqrt(v) = sign(g) after bias correction), a norm of lr * sqrt(n_grad); SGD's first step has norm
    lr_sgd * |g_1|. So lr_sgd = lr * sqrt(n_grad) / |g_1|, with (sqrt(n_grad), |g_1|) from
    ``p.sgd_first_step``. For a profile without measured numbers: sqrt(n_grad) from the model's parameter count
    (less the never-updated share) and |g_1| of the quick profile (tiny base)."""
    if p.sgd_first_step is not None:
        root_n, g1 = p.sgd_first_step
    else:
        n = sum(v.size for v in flat_params(init_params(p.base.model, 0)[1]).values())
        root_n, g1 = math.sqrt((1 - UNUSED_SHARE) * n), get_profile("quick").sgd_first_step[1]
    return round_lr(p.rl_lr * root_n / g1)


def edit_layer(p) -> int:
    """The edited block: the middle one (block 0 of a one-block base)."""
    return p.base.model.n_layers // 2


def reference_spec(p, seed: int, optimizer: str) -> RunSpec:
    """An unedited run: under AdamW the shared case-study run ``rl_run``; under SGD the same length at ``sgd_lr``."""
    if optimizer == "adamw":
        return rl_run(p, seed)
    return rl_run(p, seed, detailed=False, optimizer="sgd", lr=sgd_lr(p))


def edited_spec(p, seed: int, optimizer: str, kind: str) -> RunSpec:
    """A run from the base edited by ``kind`` (block ``edit_layer``, draw ``EDIT_SEED``), otherwise like the reference."""
    spec = rl_run(p, seed, detailed=False) if optimizer == "adamw" else reference_spec(p, seed, optimizer)
    return spec.replace(edit=EditConfig(kind, layer=edit_layer(p), seed=EDIT_SEED))


def intervention(p) -> dict:
    """C12's runs per optimizer: {'references': unedited runs of every case seed, 'edited': {edit kind: runs of
    the first EDITED_SEEDS case seeds}}."""
    seeds = case_seeds(p)
    return {opt: {"references": tuple(reference_spec(p, s, opt) for s in seeds),
                  "edited": {k: tuple(edited_spec(p, s, opt, k) for s in seeds[:EDITED_SEEDS]) for k in kinds}}
            for opt, kinds in EDIT_KINDS.items()}


# ----------------------------------------------------------------------------------------------
# C14: fixed update masks

MASK_KINDS = ("dense", "principal", "non_principal", "low_magnitude", "safe", "random")


def masked_spec(p, seed: int, kind: str) -> RunSpec:
    """The case-study RL run of ``seed`` under mask ``kind`` ('dense' = no mask; the random mask drawn with the
    run's seed)."""
    spec = rl_run(p, seed)
    if kind == "dense":
        return spec
    return spec.replace(mask=MaskConfig(kind, seed=seed if kind == "random" else 0))


def masked_seeds(p) -> tuple[int, ...]:
    """Seeds of C14's runs: the profile's seeds when it has more than the case seeds (quick and full: 5, for the
    power of the equivalence test 'tracks dense'; an 80-step masked run costs about 2 s on quick), else the case
    seeds."""
    return tuple(p.seeds) if len(p.seeds) > len(case_seeds(p)) else case_seeds(p)


def masked(p) -> dict[str, tuple[RunSpec, ...]]:
    """C14's runs: {mask kind: the case-study RL run of every ``masked_seeds`` seed under that mask}."""
    return {k: tuple(masked_spec(p, s, k) for s in masked_seeds(p)) for k in MASK_KINDS}
