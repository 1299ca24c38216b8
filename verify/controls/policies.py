"""Synthetic categorical policies and policy steps for the Gate I controls: steps that obey the Prop 3.1 leash
and steps that break it, logit steps small and large against the Fisher quadratic form, and clipped against
free log-ratios for the clip-only bound."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory.kl import clip_only_per_token_bound, fisher_quadratic_logits, kl_categorical, kl_tilted, layer_schur_bound, mu_min

SYNTH_SEEDS = tuple(range(5))

V_MAX = 12  # synthetic policies have 3..11 outcomes, padded to V_MAX with zero-probability entries


def random_policies(rng, n: int):
    """(log-probs (n, V_MAX) of n random categorical policies with 3..11 outcomes, support mask (n, V_MAX)).
    Entries beyond each policy's size get logit -inf (probability 0), so one batched call serves them all."""
    sizes = rng.integers(3, V_MAX, n)
    support = np.arange(V_MAX)[None, :] < sizes[:, None]
    logits = np.where(support, rng.normal(0, 1.5, (n, V_MAX)), -np.inf)
    return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1), support


def synthetic_leash(seed: int, step: str, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(KL(pi+ || pi), KL(q_tilde || pi)) for synthetic steps: 'tilt' moves part way to q_tilde
    (pi_t ∝ pi^(1-t) q_tilde^t, which obeys Prop 3.1), 'large' takes a big random logit step."""
    rng = np.random.default_rng(seed)
    lq, support = random_policies(rng, n)
    r = jnp.asarray(np.where(support, rng.integers(0, 2, (n, V_MAX)), 0), jnp.float32)
    beta = jnp.asarray(rng.uniform(0.5, 5.0, (n, 1)), jnp.float32)
    bound = kl_tilted(lq, r, beta)
    if step == "tilt":
        new = jax.nn.log_softmax(lq + jnp.asarray(rng.uniform(0.05, 1.0, (n, 1)), jnp.float32) * r / beta, axis=-1)
    else:
        new = jax.nn.log_softmax(lq + jnp.asarray(rng.normal(0, 3.0, (n, V_MAX)), jnp.float32), axis=-1)
    return np.asarray(kl_categorical(new, lq), np.float64), np.asarray(bound, np.float64)


def synthetic_fisher_ratio(seed: int, scale: float, n: int = 100) -> float:
    """Median KL(softmax(z + dz) || softmax(z)) / (1/2 dz^T (diag p - pp^T) dz) for random logit steps of size scale."""
    rng = np.random.default_rng(seed)
    lp, support = random_policies(rng, n)
    dz = jnp.asarray(np.where(support, rng.normal(0, scale, (n, V_MAX)), 0.0), jnp.float32)
    ratio = kl_categorical(jax.nn.log_softmax(lp + dz, axis=-1), lp) / fisher_quadratic_logits(lp, dz)
    return float(np.median(np.asarray(ratio)))


def synthetic_clip(seed: int, eps: float, clipped: bool, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(sequence KL, clip bound) for synthetic sequences of 2..7 token policies whose per-token log-ratios on
    every outcome are clipped into [log(1 - eps), log(1 + eps)] (clipped) or free."""
    rng = np.random.default_rng(seed)
    T_MAX = 8
    lengths = rng.integers(2, T_MAX, n)
    lp, support = random_policies(rng, n * T_MAX)
    lr = rng.normal(0, 0.5 if clipped else 3.0, (n * T_MAX, V_MAX))
    if clipped:
        lr = np.clip(lr, np.log1p(-eps), np.log1p(eps))
    new = jax.nn.log_softmax(lp + jnp.asarray(np.where(support, lr, 0.0), jnp.float32), axis=-1)
    # token KL of the moved policy; under clipping every log-ratio is within the band up to renormalisation
    kl_NT = np.asarray(kl_categorical(new, lp), np.float64).reshape(n, T_MAX)
    live = np.arange(T_MAX)[None, :] < lengths[:, None]
    return (kl_NT * live).sum(axis=1), lengths * clip_only_per_token_bound(eps)


def synthetic_psd_leash() -> tuple[float, float, float]:
    """(|d|, the leash sqrt(2 delta / mu) with mu the smallest eigenvalue on the range, the same with
    mu = lambda_max) for a synthetic PSD Fisher (12 x 12, rank 8) and a direction d in its range, mostly along its
    flattest direction: the first bound holds nearly tight, the second is broken."""
    rng = np.random.default_rng(0)
    B = rng.standard_normal((12, 8))
    Fs = B @ B.T
    lam_s, vec_s = np.linalg.eigh(Fs)
    mu_s = float(mu_min(Fs, range_rtol=1e-6))
    low = int(np.argmin(np.where(lam_s > 1e-6 * lam_s.max(), lam_s, np.inf)))
    d = vec_s[:, low] + 0.3 * vec_s[:, -1]  # in the range, mostly along the flattest direction: near-tight
    dl = 0.5 * float(d @ Fs @ d)
    return float(np.linalg.norm(d)), float(layer_schur_bound(dl, mu_s)), float(layer_schur_bound(dl, lam_s.max()))
