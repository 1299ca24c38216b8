"""Preference fine-tuning: DPO and SimPO on pairs built offline from the base's own samples.

Pairs (``build_pairs``): once per run, at setup, every prompt of the run's training pool gets
``num_generations`` completions sampled at temperature 1 from the released bf16 base (the sampler and
the on-device verifier of the RL step); chosen = the first verified-correct sample, rejected = the first
incorrect one of the same prompt; a prompt with no correct or no incorrect sample is dropped. The pairs
are a function of the run seed (the pool and the sampling key come from it), are checked before use
(``check_pairs``) and keep the base's summed log-probability of each completion (DPO's reference).

Losses (option names as TRL's ``DPOConfig`` and ``CPOConfig`` call them):

- DPO (Rafailov et al. 2023), ``loss_type="sigmoid"``: with h = [log pi(y_c) - log ref(y_c)] -
  [log pi(y_r) - log ref(y_r)] (sequence sums), loss = -(1 - ls) log sigma(beta h) - ls log sigma(-beta h),
  ``ls`` = ``label_smoothing`` (conservative DPO); ``reference_free`` takes the reference log-probs as 0.
  ``loss_type="ipo"`` (Azar et al. 2023): (h - 1 / (2 beta))^2 with length-averaged log-probs, as TRL does.
  Implicit reward of a completion: beta (log pi - log ref).
- SimPO (Meng et al. 2024): reference-free, length-normalised: with r = beta log pi(y) / |y| (the mean
  per-token log-prob), loss = -(1 - ls) log sigma(r_c - r_r - gamma) - ls log sigma(-(r_c - r_r - gamma)),
  gamma = ``simpo_gamma`` (the target margin, as TRL's CPOConfig with ``loss_type="simpo"``, ``cpo_alpha=0``).

``beta`` defaults by method: 0.1 for DPO (TRL's DPOConfig), 2.0 for SimPO (the SimPO paper's setting;
TRL's CPOConfig default is 0.1 for every loss type). One step (``preference_step``) draws
``train.batch_size`` pairs with replacement and uses the optimizer, storage modes and measurements of
every other step (toy_models.steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.config import ConfigError, check
from toy_models.metrics import completion_logp, entropy_token_mean
from toy_models.optim import apply_update
from toy_models.reward import verify_tokens
from toy_models.sampling import sample
from toy_models.tasks import PAD
from toy_models.steps import Pool, StepData, StepOut, StepStatics, constrain, finish_step, materialize

PREFERENCE_METHODS = ("dpo", "simpo")
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0}
PAIR_SEED_OFFSET = 29  # the pair-sampling key of a run is key(seed + 29)
SAMPLE_CHUNK = 256  # prompts sampled per call while building pairs (a fixed shape: one compile)
LOGP_CHUNK = 1024  # sequences scored per call for the reference log-probs


class PreferenceDataError(ConfigError):
    """Bad or too few preference pairs; the message names the pair or the setting to change."""


@dataclass(frozen=True)
class PreferenceConfig:
    """Options of the preference methods (``pref`` section): loss options named as in TRL, and the group
    size of the offline pair building. ``beta`` None means the method's default (DPO 0.1, SimPO 2.0)."""

    beta: float | None = None
    label_smoothing: float = 0.0
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    reference_free: bool = False  # DPO only: the reference log-probs taken as 0 (SimPO never has one)
    simpo_gamma: float = 0.5  # SimPO only: the target reward margin (TRL's default)
    num_generations: int = 8  # base samples per training prompt when the pairs are built

    def __post_init__(self):
        check(self.beta is None or (self.beta > 0 and np.isfinite(self.beta)), "pref.beta",
              f"must be positive and finite, got {self.beta}")
        check(0 <= self.label_smoothing < 0.5, "pref.label_smoothing", f"must lie in [0, 0.5), got {self.label_smoothing}")
        check(self.loss_type in ("sigmoid", "ipo"), "pref.loss_type", f"must be 'sigmoid' or 'ipo', got {self.loss_type!r}")
        check(self.loss_type == "sigmoid" or self.label_smoothing == 0, "pref.label_smoothing",
              "applies to the sigmoid loss only; set it to 0 with loss_type 'ipo'")
        check(self.simpo_gamma >= 0 and np.isfinite(self.simpo_gamma), "pref.simpo_gamma",
              f"must be non-negative and finite, got {self.simpo_gamma}")
        check(self.num_generations >= 2, "pref.num_generations",
              f"must be at least 2 (a pair needs a correct and an incorrect sample), got {self.num_generations}")

    def beta_for(self, method: str) -> float:
        """The beta of ``method``: the set value, else the method's default."""
        return DEFAULT_BETA[method] if self.beta is None else self.beta


def check_preference_fits(pref: PreferenceConfig, method: str) -> None:
    """Refuse preference options that the chosen method does not have (one sentence naming the field)."""
    check(method == "dpo" or pref.loss_type == "sigmoid", "pref.loss_type",
          f"'{pref.loss_type}' is a DPO loss; SimPO has its own (leave loss_type at 'sigmoid')")
    check(method == "dpo" or not pref.reference_free, "pref.reference_free",
          "is a DPO option; SimPO is reference-free by construction")


# ---------------------------------------------------------------------------------------------- losses


def _sigmoid_loss(z_N, label_smoothing: float):
    """-(1 - ls) log sigma(z) - ls log sigma(-z), per pair."""
    return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(z_N) - label_smoothing * jax.nn.log_sigmoid(-z_N)


def preference_loss(pref: PreferenceConfig, method: str, logp_c_N, logp_r_N, len_c_N, len_r_N, ref_c_N, ref_r_N):
    """Mean DPO or SimPO loss over pairs from per-sequence summed log-probs (policy ``logp``, reference
    ``ref``) and completion lengths in tokens; returns (loss, stats) with the implicit rewards of chosen and
    rejected, their margin and accuracy (share of pairs whose chosen reward is above the rejected one)."""
    beta = pref.beta_for(method)
    len_c, len_r = jnp.maximum(len_c_N, 1.0), jnp.maximum(len_r_N, 1.0)
    if method == "simpo":
        rew_c, rew_r = beta * logp_c_N / len_c, beta * logp_r_N / len_r
        losses = _sigmoid_loss(rew_c - rew_r - pref.simpo_gamma, pref.label_smoothing)
    elif method == "dpo":
        if pref.reference_free:
            ref_c_N, ref_r_N = jnp.zeros_like(ref_c_N), jnp.zeros_like(ref_r_N)
        ratio_c, ratio_r = logp_c_N - ref_c_N, logp_r_N - ref_r_N
        if pref.loss_type == "ipo":  # IPO on length-averaged log-probs (policy and reference alike)
            ratio_c, ratio_r = ratio_c / len_c, ratio_r / len_r
        rew_c, rew_r = beta * ratio_c, beta * ratio_r
        h = ratio_c - ratio_r
        if pref.loss_type == "ipo":
            losses = jnp.square(h - 1.0 / (2.0 * beta))
        else:
            losses = _sigmoid_loss(beta * h, pref.label_smoothing)
    else:
        raise ValueError(f"Unknown preference method {method!r}.")
    stats = {"reward/chosen": rew_c.mean(), "reward/rejected": rew_r.mean(), "reward/margin": (rew_c - rew_r).mean(),
             "reward/accuracy": (rew_c > rew_r).astype(jnp.float32).mean()}
    return losses.mean(), stats


# ----------------------------------------------------------------------------------------------- pairs


@jax.tree_util.register_dataclass
@dataclass
class PairSet:
    """Preference pairs on device: prompt + chosen and prompt + rejected tokens, their completion masks
    (1 up to and including EOS), the reference's summed log-prob of each completion, the answer tokens and
    task id of each pair's prompt. Rows ``count`` and after are padding (copies of pair 0), so every seed's
    pair set has the row count of the training pool and one compiled step serves them all."""

    chosen_NL: jnp.ndarray
    rejected_NL: jnp.ndarray
    chosen_mask_NC: jnp.ndarray
    rejected_mask_NC: jnp.ndarray
    ref_chosen_N: jnp.ndarray
    ref_rejected_N: jnp.ndarray
    answers_NA: jnp.ndarray
    task_N: jnp.ndarray
    count: jnp.ndarray  # int32 scalar


@partial(jax.jit, static_argnames=("graphdef", "mcfg", "completion_len", "num_generations"))
def _sample_verified(graphdef, mcfg, completion_len: int, num_generations: int, params, prompts_NP, answers_NA, key):
    """``num_generations`` completions per prompt at temperature 1, their masks and 0/1 verifier rewards."""
    prompts = jnp.repeat(prompts_NP, num_generations, axis=0)
    comp, _, mask = sample(graphdef, params, prompts, key, cfg=mcfg, completion_len=completion_len)
    reward = verify_tokens(comp, jnp.repeat(answers_NA, num_generations, axis=0))
    return comp, mask, reward


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def sequence_logp(graphdef, prompt_len: int, params, tokens_BL, mask_BC):
    """Summed log-probability of each row's completion tokens (those under ``mask_BC``) given its prompt."""
    lp_BCV = completion_logp(graphdef, params, tokens_BL, prompt_len)
    tok_BC = jnp.take_along_axis(lp_BCV, tokens_BL[:, prompt_len:, None], axis=-1)[..., 0]
    return jnp.sum(tok_BC * mask_BC, axis=1)


def _chunked(fn, n: int, chunk: int, *arrays):
    """``fn`` over rows of ``arrays`` in chunks of a fixed size (the last padded by repeating row 0), with
    the chunk index as the last argument; outputs concatenated and cut back to ``n`` rows."""
    outs = []
    for i, start in enumerate(range(0, n, chunk)):
        part = [a[start:start + chunk] for a in arrays]
        pad = chunk - part[0].shape[0]
        if pad:
            part = [np.concatenate([p, np.repeat(p[:1], pad, axis=0)]) for p in part]
        outs.append(jax.device_get(fn(*part, i)))
    return [np.concatenate(o)[:n] for o in zip(*outs)] if isinstance(outs[0], tuple) else np.concatenate(outs)[:n]


def build_pairs(graphdef, mcfg, base_params, pool: Pool, tasks, pref: PreferenceConfig, prompt_len: int,
                completion_len: int, seed: int, need: int) -> tuple[PairSet, dict]:
    """Preference pairs from the base's own verified samples on the training pool (see the module
    docstring); returns the checked pair set and a report (pairs built, prompts, per task, dropped). Fewer
    than ``need`` pairs (the pairs one step takes) is refused in one sentence."""
    G = pref.num_generations
    prompts, answers = np.asarray(pool.prompts_NP), np.asarray(pool.answers_NA)
    task_N = np.asarray(pool.task_N)
    n = prompts.shape[0]
    key = jax.random.key(seed + PAIR_SEED_OFFSET)
    chunk = min(SAMPLE_CHUNK, n)

    def draw(p, a, i):
        return _sample_verified(graphdef, mcfg, completion_len, G, base_params, jnp.asarray(p), jnp.asarray(a),
                                jax.random.fold_in(key, i))

    comp, mask, reward = _chunked(lambda p, a, i: tuple(x.reshape((p.shape[0], G) + x.shape[1:]) for x in draw(p, a, i)),
                                  n, chunk, prompts, answers)
    ok = reward > 0.5  # (n, G)
    keep = ok.any(axis=1) & (~ok).any(axis=1)
    rows = np.flatnonzero(keep)
    count = int(rows.size)
    report = {"pairs": count, "prompts": n, "num_generations": G,
              "per_task": {t: int(np.sum(task_N[rows] == i)) for i, t in enumerate(tasks)},
              "dropped_all_correct": int(np.sum(ok.all(axis=1))), "dropped_all_wrong": int(np.sum((~ok).all(axis=1)))}
    if count < max(need, 1):
        raise PreferenceDataError(
            f"Only {count} preference pairs were built from {n} training prompts ({G} base samples each; a prompt "
            f"needs a correct and an incorrect one), fewer than the {max(need, 1)} pairs a step takes "
            "(train.batch_size); raise train.pool_per_task or pref.num_generations, or lower train.batch_size.")
    first_ok, first_bad = np.argmax(ok, axis=1), np.argmax(~ok, axis=1)
    pick = np.concatenate([rows, np.zeros(n - count, np.int64) + rows[0]])  # padded to n rows with pair 0
    pairs = pair_set(graphdef, base_params, prompt_len, prompts[pick], comp[pick, first_ok[pick]],
                     comp[pick, first_bad[pick]], answers[pick], task_N[pick], count,
                     mask[pick, first_ok[pick]], mask[pick, first_bad[pick]])
    check_pairs(pairs, prompt_len)
    return pairs, report


def pair_set(graphdef, ref_params, prompt_len: int, prompts_NP, chosen_NC, rejected_NC, answers_NA, task_N,
             count: int, chosen_mask_NC=None, rejected_mask_NC=None) -> PairSet:
    """A ``PairSet`` from prompts and chosen and rejected completion tokens (rows ``count`` and after are
    padding), scored under the reference ``ref_params``; masks default to the non-PAD completion tokens."""
    prompts_NP, chosen_NC, rejected_NC = (np.asarray(x) for x in (prompts_NP, chosen_NC, rejected_NC))
    mask_c = (chosen_NC != PAD).astype(np.float32) if chosen_mask_NC is None else np.asarray(chosen_mask_NC, np.float32)
    mask_r = (rejected_NC != PAD).astype(np.float32) if rejected_mask_NC is None else np.asarray(rejected_mask_NC, np.float32)
    chosen = np.concatenate([prompts_NP, chosen_NC], axis=1)
    rejected = np.concatenate([prompts_NP, rejected_NC], axis=1)
    n = chosen.shape[0]

    def score(t, m, i):
        return sequence_logp(graphdef, prompt_len, ref_params, jnp.asarray(t), jnp.asarray(m))

    ref_c = _chunked(score, n, min(LOGP_CHUNK, n), chosen, mask_c)
    ref_r = _chunked(score, n, min(LOGP_CHUNK, n), rejected, mask_r)
    arrays = (chosen, rejected, mask_c, mask_r, ref_c, ref_r, np.asarray(answers_NA), np.asarray(task_N, np.int32))
    return PairSet(*(jnp.asarray(x) for x in arrays), count=jnp.int32(count))


def check_pairs(pairs: PairSet, prompt_len: int) -> None:
    """Refuse a bad pair set in one sentence: empty, a pair whose chosen and rejected sequences have
    different prompts, a chosen completion that does not verify, or a rejected one that does."""
    count = int(pairs.count)
    if count <= 0:
        raise PreferenceDataError("The preference pair set is empty: no pair has a verified-correct chosen and an "
                                  "incorrect rejected completion of the same prompt.")
    chosen, rejected = np.asarray(pairs.chosen_NL)[:count], np.asarray(pairs.rejected_NL)[:count]
    if chosen.shape != rejected.shape:
        raise PreferenceDataError(f"Preference pairs: chosen tokens have shape {chosen.shape}, rejected {rejected.shape}.")
    differ = np.flatnonzero(np.any(chosen[:, :prompt_len] != rejected[:, :prompt_len], axis=1))
    if differ.size:
        raise PreferenceDataError(f"Preference pair {int(differ[0])}: its chosen and rejected completions answer "
                                  f"different prompts ({differ.size} such pairs).")
    answers = jnp.asarray(np.asarray(pairs.answers_NA)[:count])
    ok_c = np.asarray(verify_tokens(jnp.asarray(chosen[:, prompt_len:]), answers)) > 0.5
    ok_r = np.asarray(verify_tokens(jnp.asarray(rejected[:, prompt_len:]), answers)) > 0.5
    if not ok_c.all():
        raise PreferenceDataError(f"Preference pair {int(np.argmin(ok_c))}: its chosen completion does not verify "
                                  f"against the prompt's answer ({int(np.sum(~ok_c))} such pairs).")
    if ok_r.any():
        raise PreferenceDataError(f"Preference pair {int(np.argmax(ok_r))}: its rejected completion verifies as "
                                  f"correct ({int(np.sum(ok_r))} such pairs).")


# ------------------------------------------------------------------------------------------------ step


def preference_step(st: StepStatics, trainable, opt_state, data: StepData, keys, hyper, probe_lp_old) -> StepOut:
    """One DPO or SimPO step (``st.method``): draw ``batch_size`` pairs (with replacement, ``keys[0]``),
    score chosen and rejected under the policy, take the preference loss's gradient step."""
    pairs, B, P = data.pairs, st.batch_size, st.prompt_len
    idx = jax.random.randint(keys[0], (B,), 0, pairs.count)
    tokens = constrain(jnp.concatenate([pairs.chosen_NL[idx], pairs.rejected_NL[idx]]), st.sharding)
    mask = jnp.concatenate([pairs.chosen_mask_NC[idx], pairs.rejected_mask_NC[idx]])
    ref_c, ref_r = pairs.ref_chosen_N[idx], pairs.ref_rejected_N[idx]
    lengths = mask.sum(axis=1)
    params = materialize(st, trainable, data)

    def loss_fn(tr):
        lp = completion_logp(st.graphdef, materialize(st, tr, data), tokens, P)
        seq = jnp.sum(jnp.take_along_axis(lp, tokens[:, P:, None], axis=-1)[..., 0] * mask, axis=1)
        loss, stats = preference_loss(st.pref, st.method, seq[:B], seq[B:], lengths[:B], lengths[B:], ref_c, ref_r)
        return loss, (lp, seq, stats)

    (loss, (lp_old, seq, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    lp_old = jax.lax.stop_gradient(lp_old)
    new, opt_state, change = apply_update(st.optim, st.mode, hyper, trainable, opt_state, grads, data.mask)
    metrics = {"loss/preference": loss, **stats, "logp/chosen": seq[:B].mean(), "logp/rejected": seq[B:].mean(),
               "len/chosen": lengths[:B].mean(), "len/rejected": lengths[B:].mean(),
               "entropy/token_mean": entropy_token_mean(lp_old, mask)}
    return finish_step(st, data, params, new, opt_state, change, grads, lp_old, tokens, mask, probe_lp_old, metrics)
