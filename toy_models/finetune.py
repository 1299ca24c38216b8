"""Fine-tuning a pretrained base by RL (GRPO family), SFT on demonstrations, on-policy SFT, or preference
training (DPO, SimPO on pairs of the base's own verified samples: toy_models.preference), under a storage
precision, with a matched stop. A run is a pure function of its ``RunSpec``.

The loop runs compiled segments (``toy_models.segment``: the steps between two evaluations as one
``lax.scan``) and between them: per-step metrics to metrics.jsonl, held-out accuracy every
``eval_every`` steps, a stop when the mean held-out accuracy has gained ``target_gain`` over the base
(or at ``max_steps``), parameter snapshots at chosen steps (exact for the storage mode), resumable
checkpoints, a NaN/Inf guard that names the step, and at the end the regime numbers of the run
(``theory.precision.regime_numbers``) in summary.json.

The run is written through ``toy_models.run_store``: under the run's lock, into ``<name>.partial/``, and
renamed into place with its manifest when finished. A run killed outright resumes from the partial
folder's checkpoint and gives the bits of an uninterrupted run; a run that fails (divergence with
``on_nan=raise``, out of memory, Ctrl-C) leaves nothing behind. End-of-run measurements (accuracy, KL to
the base, regime numbers) are computed from the final state, whichever way it was reached.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.adapters import AdapterConfig, init_adapter, principal_frames, validate_for_model
from toy_models.checkpoint import CheckpointError, atomic_write_json, load_checkpoint, save_checkpoint
from toy_models.config import ConfigError, apply_overrides, check
from toy_models.interventions import EditConfig, apply_edit, check_edit_fits
from toy_models.masks import MaskConfig, build_masks, check_mask_fits, masks_tree
from toy_models.metrics import exact_kl_token_mean
from toy_models.optim import OptimSpec, hyperparameters, init_opt_state, lr_for_step_ratio, median_abs_weight
from toy_models.pool import build_pool, build_probe
from toy_models.preference import PREFERENCE_METHODS, PreferenceConfig, build_pairs, check_preference_fits
from toy_models.pretrain import PRESETS as BASE_PRESETS, Base, BaseConfig, pretrain
from toy_models.progress import Progress
from toy_models.rl import MAX_SEQUENCES_PER_STEP, RLConfig
from toy_models.run_store import finished, writing
from toy_models.runs import MetricsLog, read_metrics, run_dir, write_config
from toy_models.segment import LOSS_KEY, TrainState, init_state, train_segment
from toy_models.steps import StepData, StepStatics, heldout_accuracy, materialize, probe_logp
from toy_models.storage import MODES, round_tree_bf16, stored_flat, stored_view
from toy_models.tasks import TASKS
from toy_models.transformer import flat_params, unflatten_params

RL_LR = 1e-4  # the RL learning rate of every RL preset (rule: verify/profiles.py)
SFT_LR = 1e-3  # the SFT learning rate of the sft preset
PREF_LR = 1e-4  # the learning rate of the dpo and simpo presets
METHODS = ("rl", "sft", "sft_onpolicy") + PREFERENCE_METHODS
BATCH = 64  # SFT demonstrations or DPO/SimPO pairs per step when train.batch_size is left unset
MAX_STEPS = 1_000_000
MAX_EVAL_PROBLEMS = 16_384  # per task, sampled in one batch
MAX_PROBE_SIZE = 4_096  # the probe's log-probs stay on the device for the whole run
MAX_POOL_PER_TASK = 262_144


class TrainingDiverged(FloatingPointError):
    """Loss or parameters became NaN/Inf; the message names the run and the step."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Training options of a fine-tuning run. Bounds, refused in one sentence outside them: ``lr`` in (0, 1];
    ``batch_size`` (SFT demonstrations or DPO/SimPO pairs per step; unset means 64, and it must stay unset for
    ``rl`` and ``sft_onpolicy``, whose batch is rl.prompts_per_step x rl.num_generations) 1 to 16,384; ``max_steps`` 1 to
    1,000,000; ``eval_problems`` 1 to 16,384 and ``pool_per_task`` 1 to 262,144 per task; ``probe_size`` 1 to
    4,096; ``b1``, ``b2`` in [0, 1); ``eps`` > 0; ``weight_decay`` >= 0."""

    method: Literal["rl", "sft", "sft_onpolicy", "dpo", "simpo"] = "rl"
    lr: float = RL_LR
    # "fixed": lr is the learning rate; "step_ratio": lr is the target Adam step in half-ULPs of the median |w| of
    # the released base's weight matrices, and the run's rate is toy_models.optim.lr_for_step_ratio of it (recorded
    # in summary.json as regime.lr): one spec gives every base its own rate
    lr_rule: Literal["fixed", "step_ratio"] = "fixed"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    batch_size: int | None = None  # SFT demonstrations or DPO/SimPO pairs per step (None: 64); RL, on-policy SFT: unset
    max_steps: int = 300
    target_gain: float | None = None  # stop when mean held-out accuracy gained this much over the base
    eval_every: int = 10
    eval_problems: int = 128  # per task
    probe_size: int = 64
    pool_per_task: int = 2048
    tasks: tuple[str, ...] = ()  # tasks to train and evaluate on (empty: all of the base's tasks)
    # storage: fp32 master weights with a bf16 export, as published trainers store them (the one default; see storage.py)
    precision: Literal["fp32", "bf16", "fp32_master", "fp16_master"] = "fp32_master"
    snapshot_steps: tuple[int, ...] = ()
    checkpoint_every: int = 50
    devices: int = 1
    seed: int = 0
    data_seed: int | None = None  # order of the training prompts (None: derived from seed)
    on_nan: Literal["raise", "stop"] = "raise"  # "stop": finish at the last good step with reason "diverged"

    def __post_init__(self):
        check(self.method in METHODS, "train.method", f"must be one of {list(METHODS)}, got {self.method!r}")
        check(0 < self.lr <= 1, "train.lr", f"must lie in (0, 1], got {self.lr}")
        check(self.lr_rule in ("fixed", "step_ratio"), "train.lr_rule", f"must be 'fixed' or 'step_ratio', got {self.lr_rule!r}")
        check(self.optimizer in ("adamw", "sgd"), "train.optimizer", f"must be 'adamw' or 'sgd', got {self.optimizer!r}")
        check(0 <= self.b1 < 1, "train.b1", f"must lie in [0, 1), got {self.b1}")
        check(0 <= self.b2 < 1, "train.b2", f"must lie in [0, 1), got {self.b2}")
        check(self.eps > 0, "train.eps", f"must be positive, got {self.eps}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be non-negative, got {self.weight_decay}")
        check(self.batch_size is None or self.method in ("sft",) + PREFERENCE_METHODS, "train.batch_size",
              f"is not used by method {self.method} (its batch is rl.prompts_per_step x rl.num_generations); leave it "
              f"unset, got {self.batch_size}")
        check(self.batch_size is None or 1 <= self.batch_size <= MAX_SEQUENCES_PER_STEP, "train.batch_size",
              f"must lie in 1..{MAX_SEQUENCES_PER_STEP}, got {self.batch_size}")
        check(1 <= self.max_steps <= MAX_STEPS, "train.max_steps", f"must lie in 1..{MAX_STEPS}, got {self.max_steps}")
        check(self.target_gain is None or 0 < self.target_gain < 1, "train.target_gain", f"must lie in (0, 1), got {self.target_gain}")
        check(self.eval_every >= 1, "train.eval_every", f"must be positive, got {self.eval_every}")
        check(1 <= self.eval_problems <= MAX_EVAL_PROBLEMS, "train.eval_problems",
              f"must lie in 1..{MAX_EVAL_PROBLEMS}, got {self.eval_problems}")
        check(1 <= self.probe_size <= MAX_PROBE_SIZE, "train.probe_size", f"must lie in 1..{MAX_PROBE_SIZE}, got {self.probe_size}")
        check(1 <= self.pool_per_task <= MAX_POOL_PER_TASK, "train.pool_per_task",
              f"must lie in 1..{MAX_POOL_PER_TASK}, got {self.pool_per_task}")
        for t in self.tasks:
            check(t in TASKS, "train.tasks", f"names unknown task {t!r} (known: {', '.join(TASKS)})")
        check(self.precision in MODES, "train.precision", f"must be one of {list(MODES)}, got {self.precision!r}")
        check(all(s >= 1 for s in self.snapshot_steps), "train.snapshot_steps", "must hold positive steps")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be positive, got {self.checkpoint_every}")
        check(self.devices >= 1, "train.devices", f"must be positive, got {self.devices}")
        check(self.on_nan in ("raise", "stop"), "train.on_nan", f"must be 'raise' or 'stop', got {self.on_nan!r}")

    @property
    def items_per_step(self) -> int:
        """SFT demonstrations or DPO/SimPO pairs per step: ``batch_size``, or 64 when it is unset."""
        return BATCH if self.batch_size is None else self.batch_size

    def optim(self) -> OptimSpec:
        """The static part of the optimizer (everything but the learning rate)."""
        return OptimSpec(self.optimizer, self.b1, self.b2, self.eps, self.weight_decay)

    def hyper(self) -> dict:
        """The traced optimizer numbers of a run with a fixed rate (the learning rate); ``RunSetup.hyper`` for any."""
        if self.lr_rule != "fixed":
            raise ConfigError("Field `train.lr_rule` is 'step_ratio': the learning rate comes from the base (RunSetup.lr).")
        return hyperparameters(self.lr)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a fine-tuning run (its cache key, with the source hash): the base, the RL
    options, the training options, and optionally a low-rank adapter, an update mask fixed from the base
    weights, a function-preserving edit of the base applied before fine-tuning, and the options of the
    preference methods (``pref``, read by DPO and SimPO runs only)."""

    base: BaseConfig = field(default_factory=BaseConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    edit: EditConfig = field(default_factory=EditConfig)
    pref: PreferenceConfig = field(default_factory=PreferenceConfig)

    def __post_init__(self):
        validate_for_model(self.adapter, self.base.model)
        check_mask_fits(self.mask, self.base.model)
        check_edit_fits(self.edit, self.base.model)
        check(self.adapter.kind == "none" or self.mask.kind == "none", "mask.kind",
              "must be 'none' when an adapter is trained (the adapter already restricts the update)")
        for t in self.train.tasks:
            check(t in self.base.corpus.tasks, "train.tasks", f"names task {t!r}, which the base was not pretrained on")
        if self.train.method in PREFERENCE_METHODS:
            check_preference_fits(self.pref, self.train.method)
        if self.train.devices > 1:
            check(self.batch_sequences % self.train.devices == 0, "train.devices",
                  f"must divide the batch of {self.batch_sequences} sequences")

    @property
    def batch_sequences(self) -> int:
        """Sequences per step: prompts x generations for sampling methods, batch_size for SFT, two per pair for
        DPO and SimPO."""
        if self.train.method in PREFERENCE_METHODS:
            return 2 * self.train.items_per_step
        return self.train.items_per_step if self.train.method == "sft" else self.rl.prompts_per_step * self.rl.num_generations

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this run trains and is evaluated on."""
        return self.train.tasks or self.base.corpus.tasks

    def replace(self, **sections) -> "RunSpec":
        """A copy with whole sections replaced, or fields changed by ``section__field=value``."""
        direct = {k: v for k, v in sections.items() if "__" not in k}
        spec = dataclasses.replace(self, **direct)
        for key, value in sections.items():
            if "__" in key:
                section, name = key.split("__", 1)
                spec = dataclasses.replace(spec, **{section: dataclasses.replace(getattr(spec, section), **{name: value})})
        return spec


FINETUNE_PRESETS: dict[str, tuple[RLConfig, FinetuneConfig]] = {
    "grpo_kl": (RLConfig(beta=0.04, kl_estimator="k3", epsilon=0.2, advantage_estimator="grpo", loss_agg="seq_mean"),
                FinetuneConfig(method="rl", lr=RL_LR, max_steps=600)),
    "dapo_clip": (RLConfig(beta=0.0, epsilon=0.2, epsilon_high=0.28, advantage_estimator="grpo",
                           loss_agg="global_token_mean", num_iterations=2),
                  FinetuneConfig(method="rl", lr=RL_LR, max_steps=600)),
    "drgrpo": (RLConfig(beta=0.0, epsilon=0.2, advantage_estimator="drgrpo", loss_agg="fixed_len"),
               FinetuneConfig(method="rl", lr=RL_LR, max_steps=600)),
    "sft": (RLConfig(), FinetuneConfig(method="sft", lr=SFT_LR, max_steps=1500)),
    "sft_onpolicy": (RLConfig(), FinetuneConfig(method="sft_onpolicy", lr=SFT_LR, max_steps=1500)),
    # preference training: pref options at their method's defaults (toy_models.preference), 64 pairs a step
    "dpo": (RLConfig(), FinetuneConfig(method="dpo", lr=PREF_LR, max_steps=1500)),
    "simpo": (RLConfig(), FinetuneConfig(method="simpo", lr=PREF_LR, max_steps=1500)),
}


def run_preset(name: str, base_preset: str = "small", overrides: list[str] = ()) -> RunSpec:
    """RunSpec of a fine-tuning preset on a base-model preset, with ``section.field=value`` overrides."""
    if name not in FINETUNE_PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; known fine-tuning presets: {', '.join(FINETUNE_PRESETS)}.")
    if base_preset not in BASE_PRESETS:
        raise ConfigError(f"Unknown base preset {base_preset!r}; known: {', '.join(BASE_PRESETS)}.")
    rl, train = FINETUNE_PRESETS[name]
    return apply_overrides(RunSpec(BASE_PRESETS[base_preset], rl, train), list(overrides))


@dataclass
class RunResult:
    """A finished fine-tuning run: where it lives, its summary and its snapshot steps."""

    spec: RunSpec
    directory: Path
    summary: dict

    @property
    def cfg(self) -> RunSpec:
        """The run's spec (older name)."""
        return self.spec

    def metrics(self) -> list[dict]:
        """Every record of metrics.jsonl (one per step; evaluation steps carry heldout/*)."""
        return read_metrics(self.directory / "metrics.jsonl")

    def snapshot(self, step: int | str = "final", master: bool = False) -> dict[str, np.ndarray]:
        """Parameters at a snapshot step ('base' and 'final' included) in the released form of the mode
        (bf16 export for fp32_master, fp16 export for fp16_master); ``master=True`` gives what the file holds: the
        fp32 master weights of fp32_master, fp16_master and fp32 runs, the bf16 weights of bf16 runs."""
        flat, _ = load_checkpoint(self.directory / "snapshots" / str(step))
        return flat if master else stored_view(flat, self.spec.train.precision)

    def snapshot_steps(self) -> list[str]:
        """Tags of the snapshots on disk."""
        return sorted(p.name for p in (self.directory / "snapshots").iterdir() if (p / "meta.json").exists())

    @property
    def regime(self) -> dict:
        """The run's regime numbers (theory.precision.regime_numbers), recorded in summary.json."""
        return self.summary.get("regime", {})


def _sharding(devices: int):
    if devices <= 1:
        return None
    if len(jax.devices()) < devices:
        raise ConfigError(f"Field `train.devices` asks for {devices} devices, only {len(jax.devices())} are present.")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def _save_resume(directory: Path, step: int, state: TrainState, meta: dict) -> None:
    leaves = jax.tree.leaves(state)
    flat = {f"s.{i}": np.asarray(x).astype(np.float32) if x.dtype == jnp.bool_ else np.asarray(x) for i, x in enumerate(leaves)}
    save_checkpoint(directory / "checkpoint", flat, {"step": step, **meta})


def _load_resume(directory: Path, template: TrainState):
    """(step, state, meta) of the resume checkpoint in ``directory``, or None when there is none (or it cannot be
    used: then the run starts afresh). Every leaf comes back with the template's shape and dtype."""
    ck = directory / "checkpoint"
    if not (ck / "meta.json").exists():
        return None
    leaves, treedef = jax.tree.flatten(template)
    try:
        flat, meta = load_checkpoint(ck, {f"s.{i}": tuple(l.shape) for i, l in enumerate(leaves)})
    except CheckpointError:
        return None
    state = jax.tree.unflatten(treedef, [jnp.asarray(flat[f"s.{i}"]).astype(l.dtype) for i, l in enumerate(leaves)])
    return meta["step"], state, meta


def _save_snapshot(directory: Path, tag, params, mode: str) -> None:
    save_checkpoint(directory / "snapshots" / str(tag), stored_flat(flat_params(params), mode), {"precision": mode, "step": tag})


def _drop_snapshots_after(directory: Path, step: int) -> None:
    """Remove the snapshots a killed attempt wrote after the resume step (they are written again)."""
    snaps = directory / "snapshots"
    if snaps.is_dir():
        for d in snaps.iterdir():
            if d.name == "final" or (d.name.isdigit() and int(d.name) > step):
                shutil.rmtree(d)


def segment_ends(t: FinetuneConfig) -> list[int]:
    """Steps at which a compiled segment ends: every evaluation, snapshot and checkpoint step, and the last."""
    ends = set(range(t.eval_every, t.max_steps + 1, t.eval_every)) | {t.max_steps}
    ends |= {s for s in t.snapshot_steps if s <= t.max_steps}
    ends |= set(range(t.checkpoint_every, t.max_steps + 1, t.checkpoint_every))
    return sorted(ends)


class RunSetup:
    """The device-resident pieces of a fine-tuning run, built from its spec and base: the compiled step's statics
    (``statics``), the data every step reads (``data``: pool, probe, reference parameters, mask, adapter
    frames), the starting state (``state0``), the learning rate (``lr``, the rule's when ``train.lr_rule`` is
    step_ratio) and its traced form (``hyper``), the held-out set and the run's random keys. Benchmarks and tests
    drive ``toy_models.segment`` with it; ``finetune`` is the loop around it."""

    def __init__(self, spec: RunSpec, base: Base):
        t, mcfg = spec.train, spec.base.model
        P, C = base.prompt_len, base.completion_len
        tasks, size = spec.tasks, spec.base.corpus.size
        base_params = base.params
        if spec.edit.kind != "none":  # the function-preserving edit acts on the pretrained base, before rounding
            edited, self.edit_record = apply_edit(flat_params(base.params), spec.edit, mcfg.n_heads)
            base_params = unflatten_params(base.params, edited)
        self.ref_params = round_tree_bf16(base_params)  # the released bf16 base: W0 of every mode
        pool = build_pool(tasks, size, t.pool_per_task, P, C, t.seed)
        self.heldout = build_pool(tasks, size, t.eval_problems, P, C, t.seed, heldout=True)
        probe = build_probe(base.graphdef, mcfg, self.ref_params, self.heldout, t.probe_size, P, C, t.seed)
        pairs, self.pair_report = None, None
        if t.method in PREFERENCE_METHODS:  # preference pairs from the released base's own samples, once per run
            pairs, self.pair_report = build_pairs(base.graphdef, mcfg, self.ref_params, pool, tasks, spec.pref, P, C,
                                                  t.seed, need=t.items_per_step)
        adapter = spec.adapter if spec.adapter.kind != "none" else None
        # lora, pissa and milora differ only in their initial factors: one compiled step serves the three
        merge_cfg = dataclasses.replace(adapter, kind="lora") if adapter and adapter.kind in ("pissa", "milora") else adapter
        self.statics = StepStatics(base.graphdef, mcfg, t.method, spec.rl, t.optim(), t.precision, P, C, t.items_per_step,
                                   _sharding(t.devices), merge_cfg,
                                   spec.pref if t.method in PREFERENCE_METHODS else None)
        mask = None
        if spec.mask.kind != "none":
            mask = masks_tree(self.ref_params, build_masks(flat_params(self.ref_params), spec.mask))
        if adapter is None:
            frozen, frames, trainable = None, None, self.ref_params
        else:
            frozen, trainable = init_adapter(self.ref_params, adapter, jax.random.key(t.seed + 23),
                                             bf16_factors=t.precision == "bf16")
            frames = principal_frames(frozen, adapter)
        self.data = StepData(pool, probe, self.ref_params, mask, frozen, frames, pairs)
        self.state0 = init_state(trainable, init_opt_state(t.optim(), trainable), self.ref_params)
        self.lr = t.lr if t.lr_rule == "fixed" else lr_for_step_ratio(median_abs_weight(flat_params(self.ref_params)), t.lr)
        self.hyper = hyperparameters(self.lr)
        self.tasks = tasks
        self.eval_key = jax.random.key(t.seed + 11)
        self.run_key = jax.random.key(t.seed)
        self.data_key = jax.random.fold_in(jax.random.key(t.seed if t.data_seed is None else t.data_seed), 7)

    def params(self, state: TrainState):
        """Full parameters of a state (the adapter merged in, for adapter runs)."""
        return materialize(self.statics, state.trainable, self.data)

    def evaluate(self, params) -> dict[str, float]:
        """Held-out pass rate per task."""
        st, h = self.statics, self.heldout
        acc = heldout_accuracy(st.graphdef, st.mcfg, st.completion_len, len(self.tasks), params, h.prompts_NP,
                               h.answers_NA, h.task_N, self.eval_key)
        return {name: float(a) for name, a in zip(self.tasks, np.asarray(acc))}

    def kl_to_base(self, params) -> float:
        """Exact token-mean KL(pi || base) on the probe set for full parameters ``params`` (nats per token)."""
        return float(_probe_kl_to_base(self.statics, params, self.data.probe))


@partial(jax.jit, static_argnames=("st",))
def _probe_kl_to_base(st: StepStatics, params, probe):
    return exact_kl_token_mean(probe_logp(st, params, probe), probe.base_logp_NCV, probe.mask_NC)


def _regime(setup: RunSetup, state: TrainState, params, steps: int) -> dict:
    from theory.precision import regime_numbers

    fl = lambda tree: {k: np.asarray(v) for k, v in flat_params(tree).items()}  # noqa: E731
    return regime_numbers(fl(setup.ref_params), fl(params), fl(state.change_sum), fl(state.abs_change_sum),
                          fl(state.grad_seen), setup.lr, max(steps, 1))


def _drift_ratio(setup: RunSetup, state: TrainState, params) -> float:
    """The run's drift ratio so far (``theory.precision.drift_ratio``: median |w - w0| / half-ULP(w0) over the
    weights that received a gradient), logged at every evaluation so the drift a smaller gain needed can be read."""
    from theory.precision import drift_ratio

    cat = lambda tree: np.concatenate([np.ravel(np.asarray(v)) for v in flat_params(tree).values()])  # noqa: E731
    return drift_ratio(cat(setup.ref_params), cat(params), moved=cat(state.grad_seen))


def load_run(spec: RunSpec, directory: Path) -> RunResult:
    """The finished run of ``spec`` stored in ``directory`` (read its summary.json)."""
    return RunResult(spec, directory, json.loads((directory / "summary.json").read_text()))


def finetune(spec: RunSpec, *, base: Base | None = None, force: bool = False, stop_after: int | None = None) -> RunResult:
    """Run (or load the cached and verified) fine-tuning ``spec``; when another process is writing the same run,
    wait for it and read its result. ``stop_after`` interrupts after that step and keeps the partial folder
    (tests resume from it); ``force`` trains again even when the run is cached."""
    directory = run_dir(spec.train.method, spec)
    if not force and finished(directory):
        return load_run(spec, directory)
    with writing(directory, force=force) as writer:
        if writer is None:  # another process finished it while this one waited
            return load_run(spec, directory)
        return _train(spec, base, writer, force, stop_after)


def _train(spec: RunSpec, base: Base | None, writer, force: bool, stop_after: int | None) -> RunResult:
    """Train ``spec`` into ``writer.partial`` (resuming from its checkpoint when one is there) and publish it."""
    t0 = time.time()
    base = base or pretrain(spec.base)
    t = spec.train
    setup = RunSetup(spec, base)
    part = writer.partial
    state, step = setup.state0, 0
    resumed = None if force else _load_resume(part, state)
    if resumed is not None:
        step, state, meta = resumed
        base_acc = meta["base_acc"]
        _drop_snapshots_after(part, step)
        log = MetricsLog(part / "metrics.jsonl", truncate_after_step=step)
    else:
        writer.clear()
        write_config(part, spec)
        log = MetricsLog(part / "metrics.jsonl")
        base_acc = setup.evaluate(setup.ref_params)
        _save_snapshot(part, "base", setup.ref_params, t.precision)
        log.write({"step": 0, **{f"heldout/{k}": v for k, v in base_acc.items()}, "heldout/mean": float(np.mean(list(base_acc.values())))})
    base_mean = float(np.mean(list(base_acc.values())))

    progress = Progress(f"{t.method}[{t.precision}] seed {t.seed}", t.max_steps)
    reason, last_eval, last = "max_steps", None, {}
    loss_key = LOSS_KEY[t.method]
    ends = segment_ends(t)
    length = max(b - a for a, b in zip([0] + ends, ends))
    try:
        for end in (e for e in ends if e > step):
            state, metrics, finite = train_segment(setup.statics, state, setup.data, setup.hyper, setup.run_key,
                                                   setup.data_key, jnp.int32(step), jnp.int32(end - step), length)
            metrics, finite = jax.device_get((metrics, finite))  # one transfer per segment
            finite = finite[: end - step]
            records = [{"step": step + i + 1, **{k: float(v[i]) for k, v in metrics.items()}} for i in range(end - step)]
            if not finite.all():
                bad = int(np.argmin(finite))
                if t.on_nan == "raise":
                    raise TrainingDiverged(
                        f"Run {writer.directory.name} diverged: the loss or the parameters became NaN or infinite at "
                        f"step {step + bad + 1} (loss {records[bad][loss_key]}), so nothing was saved; lower train.lr, "
                        "or set train.on_nan=stop to keep the steps before.")
                for r in records[:bad]:
                    log.write(r)
                step, reason = step + bad, "diverged"
                break
            step, last = end, records[-1]
            params = setup.params(state)
            if step % t.eval_every == 0 or step == t.max_steps:
                acc = setup.evaluate(params)
                last_eval = float(np.mean(list(acc.values())))
                last.update({f"heldout/{k}": v for k, v in acc.items()}, **{"heldout/mean": last_eval, "heldout/gain": last_eval - base_mean,
                                                                         "regime/drift_ratio": _drift_ratio(setup, state, params)})
            for r in records:
                log.write(r)
            if step in t.snapshot_steps:
                _save_snapshot(part, step, params, t.precision)
            progress.update(step, reward=last.get("reward/mean", float("nan")), kl=last["kl/to_base_exact"],
                            acc=last_eval if last_eval is not None else float("nan"))
            if t.target_gain is not None and last_eval is not None and step % t.eval_every == 0 and last_eval - base_mean >= t.target_gain:
                reason = "target_gain"
                break
            if step % t.checkpoint_every == 0:
                _save_resume(part, step, state, {"base_acc": base_acc})
            if stop_after is not None and step >= stop_after:
                writer.keep()
                return RunResult(spec, part, {"interrupted_at": step})
    finally:
        progress.close()
    params = setup.params(state)  # every end-of-run number comes from the final state, however it was reached
    final_acc = setup.evaluate(params)
    _save_snapshot(part, "final", params, t.precision)
    final_mean = float(np.mean(list(final_acc.values())))
    summary = {
        "stopped_at": step, "reason": reason, "base_acc": base_acc, "final_acc": final_acc,
        "base_mean": base_mean, "final_mean": final_mean, "gain": final_mean - base_mean,
        "kl_to_base_final": setup.kl_to_base(params),
        "regime": _regime(setup, state, params, step),
        "seconds": round(time.time() - t0, 2),
        **({"pairs": setup.pair_report} if setup.pair_report else {}),
        **({"diverged_at": step + 1} if reason == "diverged" else {}),
    }
    atomic_write_json(part / "summary.json", summary)
    shutil.rmtree(part / "checkpoint", ignore_errors=True)  # the resume state is not part of a finished run
    writer.publish()
    return RunResult(spec, writer.directory, summary)


def run_cli(command: str, preset_name: str, overrides: list[str], *, base_preset: str, force: bool) -> int:
    """`python -m toy_models rl|sft`: run and print where it stopped, accuracy, KL to the base and the regime."""
    spec = run_preset(preset_name, base_preset, overrides)
    if not spec.train.method.startswith(command):
        raise ConfigError(f"Preset {preset_name!r} is a {spec.train.method} preset; use `python -m toy_models "
                          f"{spec.train.method.split('_')[0]}`.")
    res = finetune(spec, force=force)
    s = res.summary
    print(f"run: {res.directory}")
    print(f"stopped at step {s['stopped_at']} ({s['reason']}); precision {spec.train.precision}")
    if "pairs" in s:
        p = s["pairs"]
        print(f"preference pairs: {p['pairs']} of {p['prompts']} training prompts ({p['num_generations']} base samples "
              f"each; dropped {p['dropped_all_correct']} all correct, {p['dropped_all_wrong']} all wrong)")
    print(f"{'task':6s} {'base':>7s} {'final':>7s}")
    for task in s["base_acc"]:
        print(f"{task:6s} {100 * s['base_acc'][task]:6.1f}% {100 * s['final_acc'][task]:6.1f}%")
    print(f"mean held-out accuracy {100 * s['base_mean']:.1f}% -> {100 * s['final_mean']:.1f}% "
          f"(gain {100 * s['gain']:+.1f} points); exact KL(pi || base) on the probe {s['kl_to_base_final']:.4f} nats/token")
    r = res.regime
    if r:
        print(f"regime: step ratio {r['step_ratio']:.3g}, drift ratio {r['drift_ratio']:.3g}, walk ratio {r['walk_ratio']:.3g}, "
              f"sign consistency {r['sign_consistency']:.3g}; bf16 sparsity {r['sparsity_bf16_all']:.3f} "
              f"(over parameters that received a gradient {r['sparsity_bf16_eligible']:.3f})")
    return 0
