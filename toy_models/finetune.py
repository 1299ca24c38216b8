"""Fine-tuning a pretrained base by RL (GRPO family) or SFT, under a storage precision, with a matched stop.

One loop serves both regimes: per-step metrics to metrics.jsonl, held-out accuracy every
``eval_every`` steps, a stop when the mean held-out accuracy has gained ``target_gain`` over the base
(or at ``max_steps``), parameter snapshots at chosen steps (exact for the storage mode), resumable
checkpoints, and a NaN/Inf guard that names the step and keeps the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toy_models.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint
from toy_models.config import ConfigError, apply_overrides, check
from toy_models.pool import build_pool, build_probe
from toy_models.pretrain import PRESETS as BASE_PRESETS, Base, BaseConfig, pretrain
from toy_models.rl import RLConfig, rl_step
from toy_models.runs import MetricsLog, Progress, read_metrics, run_dir, write_config
from toy_models.sft import sft_step
from toy_models.steps import heldout_accuracy
from toy_models.storage import MODES, round_tree_bf16, stored_flat, stored_view
from toy_models.transformer import flat_params, unflatten_params


class TrainingDiverged(FloatingPointError):
    """Loss or parameters became NaN/Inf; the message names the step."""


@dataclass(frozen=True)
class FinetuneConfig:
    method: Literal["rl", "sft"] = "rl"
    lr: float = 3e-4
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0
    batch_size: int = 64  # SFT demonstrations per step (RL: prompts_per_step x num_generations)
    max_steps: int = 300
    target_gain: float | None = None  # stop when mean held-out accuracy gained this much over the base
    eval_every: int = 10
    eval_problems: int = 128  # per task
    probe_size: int = 64
    pool_per_task: int = 2048
    precision: Literal["fp32", "bf16", "fp32_master"] = "bf16"
    snapshot_steps: tuple[int, ...] = ()
    checkpoint_every: int = 50
    devices: int = 1
    seed: int = 0

    def __post_init__(self):
        check(self.method in ("rl", "sft"), "train.method", f"must be 'rl' or 'sft', got {self.method!r}")
        check(self.lr > 0 and math.isfinite(self.lr), "train.lr", f"must be positive and finite, got {self.lr}")
        check(0 <= self.b1 < 1, "train.b1", f"must lie in [0, 1), got {self.b1}")
        check(0 <= self.b2 < 1, "train.b2", f"must lie in [0, 1), got {self.b2}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be non-negative, got {self.weight_decay}")
        check(self.batch_size >= 1, "train.batch_size", f"must be positive, got {self.batch_size}")
        check(self.max_steps >= 1, "train.max_steps", f"must be positive, got {self.max_steps}")
        check(self.target_gain is None or 0 < self.target_gain < 1, "train.target_gain", f"must lie in (0, 1), got {self.target_gain}")
        check(self.eval_every >= 1, "train.eval_every", f"must be positive, got {self.eval_every}")
        check(self.eval_problems >= 1, "train.eval_problems", f"must be positive, got {self.eval_problems}")
        check(self.probe_size >= 1, "train.probe_size", f"must be positive, got {self.probe_size}")
        check(self.pool_per_task >= 1, "train.pool_per_task", f"must be positive, got {self.pool_per_task}")
        check(self.precision in MODES, "train.precision", f"must be one of {list(MODES)}, got {self.precision!r}")
        check(all(s >= 0 for s in self.snapshot_steps), "train.snapshot_steps", "must hold non-negative steps")
        check(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be positive, got {self.checkpoint_every}")
        check(self.devices >= 1, "train.devices", f"must be positive, got {self.devices}")


@dataclass(frozen=True)
class RunConfig:
    base: BaseConfig = field(default_factory=BaseConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self):
        if self.train.devices > 1:
            n = self.rl.prompts_per_step * self.rl.num_generations if self.train.method == "rl" else self.train.batch_size
            check(n % self.train.devices == 0, "train.devices", f"must divide the batch of {n} sequences")


FINETUNE_PRESETS: dict[str, tuple[RLConfig, FinetuneConfig]] = {
    "grpo_kl": (RLConfig(beta=0.04, kl_estimator="k3", epsilon=0.2, advantage_estimator="grpo", loss_agg="seq_mean"),
                FinetuneConfig(method="rl", lr=1e-4, max_steps=600)),
    "dapo_clip": (RLConfig(beta=0.0, epsilon=0.2, epsilon_high=0.28, advantage_estimator="grpo",
                           loss_agg="global_token_mean", num_iterations=2),
                  FinetuneConfig(method="rl", lr=1e-4, max_steps=600)),
    "drgrpo": (RLConfig(beta=0.0, epsilon=0.2, advantage_estimator="drgrpo", loss_agg="fixed_len"),
               FinetuneConfig(method="rl", lr=1e-4, max_steps=600)),
    "sft": (RLConfig(), FinetuneConfig(method="sft", lr=1e-3, batch_size=64, max_steps=1500)),
}


def run_preset(name: str, base_preset: str = "small", overrides: list[str] = ()) -> RunConfig:
    """RunConfig of a fine-tuning preset on a base-model preset, with ``section.field=value`` overrides."""
    if name not in FINETUNE_PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; known fine-tuning presets: {', '.join(FINETUNE_PRESETS)}.")
    if base_preset not in BASE_PRESETS:
        raise ConfigError(f"Unknown base preset {base_preset!r}; known: {', '.join(BASE_PRESETS)}.")
    rl, train = FINETUNE_PRESETS[name]
    return apply_overrides(RunConfig(BASE_PRESETS[base_preset], rl, train), list(overrides))


@dataclass
class RunResult:
    """A finished fine-tuning run: where it lives, its summary and its snapshot steps."""

    cfg: RunConfig
    directory: Path
    summary: dict

    def metrics(self) -> list[dict]:
        return read_metrics(self.directory / "metrics.jsonl")

    def snapshot(self, step: int | str = "final", master: bool = False) -> dict[str, np.ndarray]:
        """Parameters at a snapshot step ('base' and 'final' included) in the released form of the mode
        (bf16 export for fp32_master); ``master=True`` gives the fp32 master weights of fp32_master."""
        flat, _ = load_checkpoint(self.directory / "snapshots" / str(step))
        return flat if master else stored_view(flat, self.cfg.train.precision)

    def snapshot_steps(self) -> list[str]:
        return sorted(p.name for p in (self.directory / "snapshots").iterdir() if (p / "meta.json").exists())


def _optimizer(t: FinetuneConfig):
    return optax.adamw(t.lr, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay)


def _sharding(devices: int):
    if devices <= 1:
        return None
    if len(jax.devices()) < devices:
        raise ConfigError(f"Field `train.devices` asks for {devices} devices, only {len(jax.devices())} are present.")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


@jax.jit
def _all_finite(tree):
    """One device scalar: every parameter is finite (one transfer per step, not one per tensor)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _save_resume(directory: Path, step: int, params, opt_state, state: dict) -> None:
    flat = flat_params(params)
    flat.update({f"opt.{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(opt_state))})
    save_checkpoint(directory / "checkpoint", flat, {"step": step, **state})


def _load_resume(directory: Path, params_template, opt_template):
    ck = directory / "checkpoint"
    if not (ck / "meta.json").exists():
        return None
    flat, meta = load_checkpoint(ck)
    params = unflatten_params(params_template, {k: v for k, v in flat.items() if not k.startswith("opt.")})
    leaves, treedef = jax.tree.flatten(opt_template)
    opt_state = jax.tree.unflatten(treedef, [jnp.asarray(flat[f"opt.{i}"], dtype=l.dtype) for i, l in enumerate(leaves)])
    return meta["step"], params, opt_state, meta


def _save_snapshot(directory: Path, tag, params, mode: str) -> None:
    save_checkpoint(directory / "snapshots" / str(tag), stored_flat(flat_params(params), mode), {"precision": mode, "step": tag})


def finetune(cfg: RunConfig, *, base: Base | None = None, quiet: bool = False, force: bool = False,
             stop_after: int | None = None) -> RunResult:
    """Run (or load the cached) fine-tuning ``cfg``. ``stop_after`` interrupts after that step (tests resume)."""
    directory = run_dir(cfg.train.method, cfg)
    if not force and (directory / "summary.json").exists():
        return RunResult(cfg, directory, json.loads((directory / "summary.json").read_text()))
    if force and directory.exists():
        shutil.rmtree(directory)
    base = base or pretrain(cfg.base, quiet=quiet)
    t, rl, mcfg = cfg.train, cfg.rl, cfg.base.model
    P, C = base.prompt_len, base.completion_len
    tasks = cfg.base.corpus.tasks
    graphdef = base.graphdef
    ref_params = round_tree_bf16(base.params)  # the released bf16 base: W0 of every mode
    pool = build_pool(tasks, cfg.base.corpus.size, t.pool_per_task, P, C, t.seed)
    heldout = build_pool(tasks, cfg.base.corpus.size, t.eval_problems, P, C, t.seed, heldout=True)
    probe = build_probe(graphdef, mcfg, ref_params, heldout, t.probe_size, P, C, t.seed)
    opt = _optimizer(t)
    sharding = _sharding(t.devices)
    eval_key = jax.random.key(t.seed + 11)
    run_key = jax.random.key(t.seed)

    def evaluate(params):
        acc = heldout_accuracy(graphdef, mcfg, C, len(tasks), params, heldout.prompts_NP, heldout.answers_NA,
                               heldout.task_N, eval_key)
        return {name: float(a) for name, a in zip(tasks, np.asarray(acc))}

    params, opt_state, step = ref_params, opt.init(ref_params), 0
    resumed = None if force else _load_resume(directory, ref_params, opt_state)
    if resumed is not None:
        step, params, opt_state, state = resumed
        base_acc = state["base_acc"]
        log = MetricsLog(directory / "metrics.jsonl", truncate_after_step=step)
    else:
        write_config(directory, cfg)
        log = MetricsLog(directory / "metrics.jsonl")
        base_acc = evaluate(ref_params)
        _save_snapshot(directory, "base", ref_params, t.precision)
        log.write({"step": 0, **{f"heldout/{k}": v for k, v in base_acc.items()}, "heldout/mean": float(np.mean(list(base_acc.values())))})
    base_mean = float(np.mean(list(base_acc.values())))

    progress = Progress(f"{t.method}[{t.precision}]", t.max_steps, quiet)
    reason, last_eval = "max_steps", None
    while step < t.max_steps:
        key = jax.random.fold_in(run_key, step)
        if t.method == "rl":
            new_params, new_opt, m = rl_step(graphdef, mcfg, rl, opt, t.precision, P, C, sharding,
                                             params, opt_state, ref_params, pool, probe, key)
        else:
            new_params, new_opt, m = sft_step(graphdef, opt, t.precision, P, t.batch_size, sharding,
                                              params, opt_state, pool, probe, key)
        m, finite = jax.device_get((m, _all_finite(new_params)))  # one transfer for all step metrics
        m = {k: float(v) for k, v in m.items()}
        loss_key = "loss/policy" if t.method == "rl" else "loss/ce"
        if not math.isfinite(m[loss_key]) or not bool(finite):
            progress.close()
            raise TrainingDiverged(
                f"Training hit NaN/Inf at step {step + 1} (loss {m[loss_key]}); the last good checkpoint is in {directory / 'checkpoint'}.")
        params, opt_state, step = new_params, new_opt, step + 1
        record = {"step": step, **m}
        if step % t.eval_every == 0 or step == t.max_steps:
            acc = evaluate(params)
            last_eval = float(np.mean(list(acc.values())))
            record.update({f"heldout/{k}": v for k, v in acc.items()}, **{"heldout/mean": last_eval, "heldout/gain": last_eval - base_mean})
        log.write(record)
        if step in t.snapshot_steps:
            _save_snapshot(directory, step, params, t.precision)
        progress.update(step, loss=m[loss_key], reward=m.get("reward/mean", float("nan")),
                        kl=m["kl/to_base_exact"], acc=last_eval if last_eval is not None else float("nan"))
        if t.target_gain is not None and last_eval is not None and step % t.eval_every == 0 and last_eval - base_mean >= t.target_gain:
            reason = "target_gain"
            break
        if step % t.checkpoint_every == 0:
            _save_resume(directory, step, params, opt_state, {"base_acc": base_acc})
        if stop_after is not None and step >= stop_after:
            progress.close()
            return RunResult(cfg, directory, {"interrupted_at": step})
    progress.close()
    final_acc = evaluate(params)
    _save_snapshot(directory, "final", params, t.precision)
    summary = {
        "stopped_at": step, "reason": reason, "base_acc": base_acc, "final_acc": final_acc,
        "base_mean": base_mean, "final_mean": float(np.mean(list(final_acc.values()))),
        "gain": float(np.mean(list(final_acc.values()))) - base_mean,
        "kl_to_base_final": m["kl/to_base_exact"] if step else 0.0,
    }
    atomic_write_json(directory / "summary.json", summary)
    return RunResult(cfg, directory, summary)


def run_cli(command: str, preset_name: str, overrides: list[str], *, base_preset: str, quiet: bool, force: bool) -> int:
    """`python -m toy_models rl|sft`: run and print where it stopped, accuracy and KL to the base."""
    cfg = run_preset(preset_name, base_preset, overrides)
    if cfg.train.method != command:
        raise ConfigError(f"Preset {preset_name!r} is a {cfg.train.method} preset; use `python -m toy_models {cfg.train.method}`.")
    res = finetune(cfg, quiet=quiet, force=force)
    s = res.summary
    print(f"run: {res.directory}")
    print(f"stopped at step {s['stopped_at']} ({s['reason']}); precision {cfg.train.precision}")
    print(f"{'task':6s} {'base':>7s} {'final':>7s}")
    for task in s["base_acc"]:
        print(f"{task:6s} {100 * s['base_acc'][task]:6.1f}% {100 * s['final_acc'][task]:6.1f}%")
    print(f"mean held-out accuracy {100 * s['base_mean']:.1f}% -> {100 * s['final_mean']:.1f}% "
          f"(gain {100 * s['gain']:+.1f} points); exact KL(pi || base) on the probe {s['kl_to_base_final']:.4f} nats/token")
    return 0
