"""Pretraining a base model by cross-entropy on a noisy task corpus, cached by config hash.

The corpus mixes every task; each answer is correct with probability ``corpus.correct_rate`` and
otherwise a plausible wrong answer from the task's corrupter. A model that fits this corpus puts
about ``correct_rate`` of its mass on the right answer, so at temperature 1 it solves each task only
partly: RL then has something to sharpen, and the weights still carry the structure that solving
the tasks needs (the principal directions the paper's Gate II is about).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toy_models.checkpoint import load_checkpoint, save_checkpoint
from toy_models.config import ConfigError, check, to_dict
from toy_models.evaluate import heldout_problems, pass_at_k, pass_rates
from toy_models.lm import ce_steps, completion_loss_mask
from toy_models.progress import Progress
from toy_models.run_store import finished, writing
from toy_models.runs import MetricsLog, run_dir, write_config
from toy_models.tasks import TASKS, encode_completion, encode_prompt, get_task, layout_lengths
from toy_models.transformer import ModelConfig, flat_params, init_params, unflatten_params, weight_matrices


MAX_EXAMPLES = 2_000_000
MAX_BATCH = 16_384
MAX_PRETRAIN_STEPS = 10_000_000


@dataclass(frozen=True)
class CorpusConfig:
    """The pretraining corpus. Bounds: ``size`` 1 to 4, ``correct_rate`` in (0, 1], ``n_examples`` 1 to
    2,000,000 (the corpus is built in memory)."""

    tasks: tuple[str, ...] = ("add", "mod", "sort", "rev")
    size: int = 2
    correct_rate: float = 0.5
    n_examples: int = 20000

    def __post_init__(self):
        check(len(self.tasks) >= 1, "corpus.tasks", "must name at least one task")
        for t in self.tasks:
            check(t in TASKS, "corpus.tasks", f"names unknown task {t!r} (known: {', '.join(TASKS)})")
        check(1 <= self.size <= 4, "corpus.size", f"must be in 1..4, got {self.size}")
        check(0.0 < self.correct_rate <= 1.0, "corpus.correct_rate", f"must be in (0, 1], got {self.correct_rate}")
        check(1 <= self.n_examples <= MAX_EXAMPLES, "corpus.n_examples", f"must lie in 1..{MAX_EXAMPLES}, got {self.n_examples}")

    @property
    def lengths(self) -> tuple[int, int]:
        return layout_lengths(self.tasks, self.size)


@dataclass(frozen=True)
class PretrainConfig:
    """Pretraining options. Bounds: ``steps`` 0 to 10,000,000 (0 keeps the random init), ``batch_size`` 1 to
    16,384, ``lr`` in (0, 1], ``warmup`` >= 0, ``weight_decay`` >= 0, ``eval_problems`` 1 to 16,384 per task,
    ``chunk`` 1 to 10,000 steps per compiled scan."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    eval_problems: int = 256
    chunk: int = 100

    def __post_init__(self):
        check(0 <= self.steps <= MAX_PRETRAIN_STEPS, "train.steps",
              f"must lie in 0..{MAX_PRETRAIN_STEPS} (0 keeps the random init), got {self.steps}")
        check(1 <= self.batch_size <= MAX_BATCH, "train.batch_size", f"must lie in 1..{MAX_BATCH}, got {self.batch_size}")
        check(0 < self.lr <= 1, "train.lr", f"must lie in (0, 1], got {self.lr}")
        check(self.warmup >= 0, "train.warmup", f"must be non-negative, got {self.warmup}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be non-negative, got {self.weight_decay}")
        check(1 <= self.eval_problems <= MAX_BATCH, "train.eval_problems", f"must lie in 1..{MAX_BATCH}, got {self.eval_problems}")
        check(1 <= self.chunk <= 10_000, "train.chunk", f"must lie in 1..10000, got {self.chunk}")


@dataclass(frozen=True)
class BaseConfig:
    """A base model: its architecture, its pretraining corpus and its pretraining options."""

    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    train: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self):
        p, c = self.corpus.lengths
        check(self.model.max_len >= p + c, "model.max_len", f"must be at least prompt+completion length {p + c}, got {self.model.max_len}")


PRESETS: dict[str, BaseConfig] = {
    "tiny": BaseConfig(
        ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=24),
        CorpusConfig(size=1, n_examples=4000),
        PretrainConfig(steps=1500, batch_size=64, lr=1e-2, warmup=50, eval_problems=128),
    ),
    "small": BaseConfig(
        ModelConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, max_len=40),
        CorpusConfig(size=2, n_examples=20000),
        PretrainConfig(steps=4000, batch_size=64, lr=3e-3, warmup=100),
    ),
    "medium": BaseConfig(
        ModelConfig(d_model=256, n_layers=4, n_heads=8, d_ff=1024, max_len=48),
        CorpusConfig(size=3, n_examples=100000),
        PretrainConfig(steps=10000, batch_size=256, lr=1e-3, warmup=500),
    ),
}


def _ladder_rung(width: int, depth: int = 1) -> BaseConfig:
    """The tiny base widened to ``width`` and deepened to ``depth`` layers, as the regime ladder builds its rungs
    (verify/experiments/sweeps.py ``width_base``): d_ff = 2 d_model, heads of 16 dimensions, the tiny corpus and
    pretraining length, the pretraining lr scaled by sqrt(32 / width)."""
    t = PRESETS["tiny"]
    return BaseConfig(ModelConfig(d_model=width, n_layers=depth, n_heads=max(2, width // 16), d_ff=2 * width,
                                  max_len=t.model.max_len),
                      t.corpus, replace(t.train, lr=t.train.lr * math.sqrt(t.model.d_model / width)))


# GPU rungs of the regime ladder (too slow for 2 CPU cores; benchmarks/bench_ladder_gpu.py runs them on one GPU)
PRESETS.update({"ladder-w1024": _ladder_rung(1024), "ladder-w2048": _ladder_rung(2048),
                "ladder-w1024-d4": _ladder_rung(1024, 4)})


def preset(name: str) -> BaseConfig:
    """The base-model preset called ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"Unknown preset {name!r}; known presets: {', '.join(PRESETS)}.")
    return PRESETS[name]


def build_corpus(cfg: CorpusConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_NL, loss_mask_NL) of the noisy pretraining corpus, tasks interleaved."""
    rng = np.random.default_rng(seed)
    p_len, c_len = cfg.lengths
    rows = []
    for i in range(cfg.n_examples):
        task = get_task(cfg.tasks[i % len(cfg.tasks)])
        problem = task.generate(rng, cfg.size)
        answer = problem.answer if rng.random() < cfg.correct_rate else task.corrupt(rng, problem, cfg.size)
        rows.append(np.concatenate([encode_prompt(problem.prompt, p_len), encode_completion(answer, c_len)]))
    tokens = np.stack(rows).astype(np.int32)
    return tokens, np.asarray(completion_loss_mask(jnp.asarray(tokens), p_len))


@dataclass
class Base:
    """A pretrained base model, ready to fine-tune: ``pass_rates`` (one sample per held-out problem at temperature 1)
    and ``pass_at`` ({task: {k: pass@k}} from ``toy_models.evaluate.PASS_SAMPLES`` samples per problem)."""

    cfg: BaseConfig
    graphdef: object
    params: object
    directory: Path
    pass_rates: dict[str, float]
    init_flat: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    pass_at: dict[str, dict[int, float]] = field(default_factory=dict)

    def mean_pass_at(self, k: int) -> float:
        """pass@k averaged over the base's tasks."""
        return float(np.mean([v[k] for v in self.pass_at.values()]))

    @property
    def prompt_len(self) -> int:
        return self.cfg.corpus.lengths[0]

    @property
    def completion_len(self) -> int:
        return self.cfg.corpus.lengths[1]

    def flat(self) -> dict[str, np.ndarray]:
        return flat_params(self.params)


def spectrum_summary(flat_base: dict, flat_init: dict, k: int = 4) -> dict[str, dict[str, float]]:
    """Per kind of weight matrix: mean stable rank and top-k energy share, base against init."""
    from theory.spectral import stable_rank, top_k_energy_share

    kinds: dict[str, list] = {}
    wb, wi = weight_matrices(flat_base), weight_matrices(flat_init)
    for name in wb:
        kind = name.split("/", 1)[-1]
        kinds.setdefault(kind, []).append(name)
    out = {}
    for kind, names in sorted(kinds.items()):
        kk = lambda w: min(k, min(w.shape))
        out[kind] = {
            "stable_rank_init": float(np.mean([stable_rank(wi[n]) for n in names])),
            "stable_rank_base": float(np.mean([stable_rank(wb[n]) for n in names])),
            "topk_energy_init": float(np.mean([top_k_energy_share(wi[n], kk(wi[n])) for n in names])),
            "topk_energy_base": float(np.mean([top_k_energy_share(wb[n], kk(wb[n])) for n in names])),
        }
    return out


def _schedule(cfg: PretrainConfig):
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(cfg.warmup, 1), max(cfg.steps, cfg.warmup + 1), cfg.lr * 0.1)


def pretrain(cfg: BaseConfig, *, force: bool = False) -> Base:
    """Pretrain (or load the cached and verified) base model for ``cfg``. Like a fine-tuning run, it is written by
    one process at a time into a partial folder and renamed into place with its manifest; a process that finds
    another one pretraining it waits and reads the result."""
    directory = run_dir("base", cfg)
    graphdef, init = init_params(cfg.model, cfg.train.seed)
    init_flat = flat_params(init)
    shapes = {k: v.shape for k, v in init_flat.items()}

    def load() -> Base:
        flat, meta = load_checkpoint(directory / "checkpoint", shapes)
        return Base(cfg, graphdef, unflatten_params(init, flat), directory, meta["pass_rates"], init_flat,
                    {t: {int(k): v for k, v in by_k.items()} for t, by_k in meta["pass_at"].items()})

    if not force and finished(directory):
        return load()
    with writing(directory, force=force) as writer:
        if writer is None:
            return load()
        writer.clear()  # pretraining has no resume state: a killed attempt starts again
        params, rates, at_k = _pretrain_into(writer.partial, cfg, graphdef, init, init_flat)
        writer.publish()
    return Base(cfg, graphdef, params, directory, rates, init_flat, at_k)


def _pretrain_into(part: Path, cfg: BaseConfig, graphdef, init, init_flat):
    """Pretrain ``cfg`` from ``init``, writing config, metrics and the checkpoint into ``part``."""
    write_config(part, cfg)
    log = MetricsLog(part / "metrics.jsonl")
    p_len, c_len = cfg.corpus.lengths
    tokens, mask = build_corpus(cfg.corpus, cfg.train.seed)
    tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
    opt = optax.adamw(_schedule(cfg.train), b1=0.9, b2=0.98, weight_decay=cfg.train.weight_decay)
    params, opt_state = init, opt.init(init)
    key = jax.random.key(cfg.train.seed)
    progress = Progress("pretrain", cfg.train.steps)
    done = 0
    try:
        while done < cfg.train.steps:
            n = min(cfg.train.chunk, cfg.train.steps - done)
            params, opt_state, losses = ce_steps(graphdef, opt, params, opt_state, tokens, mask,
                                                 jax.random.fold_in(key, done), prompt_len=p_len,
                                                 batch_size=cfg.train.batch_size, num_steps=n)
            losses = np.asarray(losses)
            if not np.all(np.isfinite(losses)):
                raise FloatingPointError(f"Pretraining of {part.name.removesuffix('.partial')} diverged: the loss became "
                                         f"NaN or infinite within steps {done}..{done + n}; lower train.lr.")
            for i, l in enumerate(losses):
                log.write({"step": done + i, "loss/ce": float(l)})
            done += n
            progress.update(done, loss=float(losses[-1]))
    finally:
        progress.close()
    problems = heldout_problems(cfg.corpus.tasks, cfg.train.eval_problems, cfg.corpus.size, cfg.train.seed)
    rates = pass_rates(graphdef, params, cfg.model, problems, p_len, c_len, jax.random.key(cfg.train.seed + 1))
    at_k = pass_at_k(graphdef, params, cfg.model, problems, p_len, c_len, jax.random.key(cfg.train.seed + 2))
    flat = flat_params(params)
    summary = spectrum_summary(flat, init_flat)
    log.write({"step": cfg.train.steps, **{f"pass_rate/{t}": r for t, r in rates.items()},
               **{f"pass_at_{k}/{t}": v for t, by_k in at_k.items() for k, v in by_k.items()}})
    save_checkpoint(part / "checkpoint", flat, {"config": to_dict(cfg), "pass_rates": rates, "spectrum": summary,
                                                "pass_at": {t: {str(k): v for k, v in by_k.items()} for t, by_k in at_k.items()}})
    return params, rates, at_k


def in_band(rates: dict[str, float], low: float = 0.10, high: float = 0.60) -> bool:
    """True when every task's pass rate lies in [low, high] (the base solves each task only partly)."""
    return all(low <= r <= high for r in rates.values())
