"""Gate I: the KL anchor (docs/science.md section 3, paper Section 3 "Gate I" and Prop 3.1 / 3.2).

Contents
- exact categorical KL over the vocabulary axis, per position / per sequence / token mean;
- the sampled-token estimators k1, k2, k3 (Schulman, "Approximating KL divergence", 2020; the names
  TRL and tunix use for ``kl_estimator``);
- the tilting lemma (q_tilde proportional to q exp(R / beta)) and KL(q_tilde || q) with its
  large-beta approximation Var_q(R) / (2 beta^2);
- the Fisher quadratic 1/2 D^T F D in logit space and in parameter space (via ``jax.jvp``, no dense F);
- the Prop 3.1 / 3.2 bounds, the per-layer Schur-complement bound and the clip-only (beta = 0) bound.

Numerics: every function computes in at least fp32 (bf16 / fp16 inputs are promoted; fp64 inputs stay
fp64 when x64 is enabled, which the verify scripts use for exact checks). Log-probabilities may hold
-inf for zero-probability entries; such entries contribute 0 wherever p = 0 (``where`` guards, no NaN).
Argument checks raise ``ValueError`` naming the argument; value checks are skipped under tracing.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from theory.validate import (
    is_concrete,
    require_finite,
    require_nonempty,
    require_open_unit,
    require_positive,
    require_same_shape,
)

__all__ = [
    "log_softmax32",
    "kl_categorical",
    "kl_per_sequence",
    "kl_token_mean",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_estimate",
    "tilted_policy",
    "kl_tilted",
    "kl_tilted_small_step_approx",
    "fisher_quadratic_logits",
    "fisher_quadratic_params",
    "prop31_bound",
    "prop32_fisher_norm_bound",
    "prop32_euclid_bound",
    "layer_schur_bound",
    "schur_complement",
    "mu_min",
    "clip_only_per_token_bound",
    "clip_only_bound",
]


# ----------------------------------------------------------------------------------------------
# helpers


def _f(x):
    """``x`` as a jnp array of at least fp32 (fp64 kept when x64 is on)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _require_logprobs(name: str, x) -> None:
    """Log-probabilities (or logits): non-empty, no NaN, no +inf (-inf is a legal zero probability)."""
    require_nonempty(name, x)
    if is_concrete(x):
        a = np.asarray(x, dtype=np.float64)
        if np.any(np.isnan(a)) or np.any(a == np.inf):
            raise ValueError(f"Argument `{name}` contains NaN or +inf values (log-probabilities may only hold -inf).")


def _require_scalar_positive(name: str, value) -> None:
    if is_concrete(value):
        if np.ndim(value) == 0:
            require_positive(name, value)
        elif not bool(np.all(np.asarray(value, dtype=np.float64) > 0)):
            raise ValueError(f"Argument `{name}` must be positive, got {value}.")


def _require_nonneg(name: str, value) -> None:
    if is_concrete(value):
        a = np.asarray(value, dtype=np.float64)
        if not bool(np.all(np.isfinite(a))) or not bool(np.all(a >= 0)):
            raise ValueError(f"Argument `{name}` must be finite and non-negative, got {value}.")


# ----------------------------------------------------------------------------------------------
# exact KL


def log_softmax32(logits):
    """Log-softmax over the last (vocabulary) axis, computed in (at least) fp32.

    -inf logits (masked vocabulary entries) are allowed; NaN and +inf are refused."""
    _require_logprobs("logits", logits)
    return jax.nn.log_softmax(_f(logits), axis=-1)


def kl_categorical(logp_p, logp_q):
    """Exact KL(p || q) = sum_v p_v (log p_v - log q_v) over the last axis, one value per position.

    Entries with p_v = 0 (log p_v = -inf) contribute 0; p_v > 0 with q_v = 0 gives +inf.
    Round-off below zero is clamped to 0 (KL >= 0, Gibbs' inequality)."""
    _require_logprobs("logp_p", logp_p)
    _require_logprobs("logp_q", logp_q)
    require_same_shape("logp_p", logp_p, "logp_q", logp_q)
    lp, lq = _f(logp_p), _f(logp_q)
    p = jnp.exp(lp)
    pos = p > 0
    diff = jnp.where(pos, lp - jnp.where(pos, lq, 0.0), 0.0)
    kl = jnp.sum(jnp.where(pos, p * diff, 0.0), axis=-1)
    return jnp.where(kl < 0, jnp.zeros_like(kl), kl)


def _masked_kl(logp_p_BTV, logp_q_BTV, mask_BT):
    _require_logprobs("logp_p_BTV", logp_p_BTV)
    _require_logprobs("logp_q_BTV", logp_q_BTV)
    require_same_shape("logp_p_BTV", logp_p_BTV, "logp_q_BTV", logp_q_BTV)
    if np.shape(mask_BT) != np.shape(logp_p_BTV)[:-1]:
        raise ValueError(
            f"Argument `mask_BT` must have shape {tuple(np.shape(logp_p_BTV)[:-1])} "
            f"(the log-prob shape without its vocabulary axis), got {tuple(np.shape(mask_BT))}."
        )
    m = jnp.asarray(mask_BT).astype(bool)
    kl_BT = kl_categorical(logp_p_BTV, logp_q_BTV)
    return jnp.where(m, kl_BT, 0.0), m


def kl_per_sequence(logp_p_BTV, logp_q_BTV, mask_BT):
    """Sequence KL: sum over masked positions t of KL(p_t || q_t) (chain rule for autoregressive
    policies evaluated on given prefixes). Returns shape [B]."""
    kl_BT, _ = _masked_kl(logp_p_BTV, logp_q_BTV, mask_BT)
    return jnp.sum(kl_BT, axis=-1)


def kl_token_mean(logp_p_BTV, logp_q_BTV, mask_BT):
    """Token-mean KL: sum of per-position KL over all masked tokens / number of masked tokens
    (0 when no token is masked in). Returns a scalar."""
    kl_BT, m = _masked_kl(logp_p_BTV, logp_q_BTV, mask_BT)
    n = jnp.sum(m)
    return jnp.sum(kl_BT) / jnp.maximum(n, 1).astype(kl_BT.dtype)


# ----------------------------------------------------------------------------------------------
# sampled-token estimators


def _log_ratio(logp_p, logp_q):
    require_nonempty("logp_p", logp_p)
    require_nonempty("logp_q", logp_q)
    require_finite("logp_p", logp_p)
    require_finite("logp_q", logp_q)
    require_same_shape("logp_p", logp_p, "logp_q", logp_q)
    return _f(logp_q) - _f(logp_p)


def kl_k1(logp_p, logp_q):
    """k1 = -r with r = log q(y) - log p(y), y ~ p: unbiased for KL(p || q), can be negative.

    Convention (Schulman 2020; TRL / tunix ``kl_estimator``): p is the sampling policy, q the reference."""
    return -_log_ratio(logp_p, logp_q)


def kl_k2(logp_p, logp_q):
    """k2 = r^2 / 2 with r = log q(y) - log p(y), y ~ p: biased, >= 0, exact to second order."""
    r = _log_ratio(logp_p, logp_q)
    return 0.5 * r * r


def kl_k3(logp_p, logp_q, clamp: float = 20.0):
    """k3 = exp(r) - 1 - r with r = log q(y) - log p(y), y ~ p: unbiased for KL(p || q) and >= 0 pointwise.

    ``r`` is clamped to [-clamp, clamp] before ``exp`` (overflow guard; biased only beyond the clamp)."""
    _require_scalar_positive("clamp", clamp)
    r = jnp.clip(_log_ratio(logp_p, logp_q), -clamp, clamp)
    return jnp.maximum(jnp.expm1(r) - r, 0.0)


def kl_estimate(logp_p, logp_q, kind: str = "k3", clamp: float = 20.0):
    """Dispatch on the TRL / tunix estimator name ``kind`` in {"k1", "k2", "k3"}."""
    if kind == "k1":
        return kl_k1(logp_p, logp_q)
    if kind == "k2":
        return kl_k2(logp_p, logp_q)
    if kind == "k3":
        return kl_k3(logp_p, logp_q, clamp)
    raise ValueError(f"Argument `kind` must be one of 'k1', 'k2', 'k3', got {kind!r}.")


# ----------------------------------------------------------------------------------------------
# tilting lemma


def _tilt_args(logp_q, reward, beta):
    _require_logprobs("logp_q", logp_q)
    require_nonempty("reward", reward)
    require_finite("reward", reward)
    _require_scalar_positive("beta", beta)
    try:
        np.broadcast_shapes(np.shape(reward), np.shape(logp_q))
    except ValueError:
        raise ValueError(
            f"Argument `reward` (shape {tuple(np.shape(reward))}) does not broadcast to `logp_q` "
            f"(shape {tuple(np.shape(logp_q))})."
        ) from None


def tilted_policy(logp_q, reward, beta):
    """Tilting lemma: argmax_pi E_pi[R] - beta KL(pi || q) is q_tilde(y) = q(y) exp(R(y) / beta) / Z.

    Returns log q_tilde over the last axis (log-space normalisation, stable for small beta). ``beta`` is a
    scalar or broadcasts against ``logp_q[..., :1]``."""
    _tilt_args(logp_q, reward, beta)
    return jax.nn.log_softmax(_f(logp_q) + _f(reward) / beta, axis=-1)


def kl_tilted(logp_q, reward, beta):
    """KL(q_tilde || q), the right-hand side of the one-step leash (Prop 3.1) with pi_theta = q."""
    return kl_categorical(tilted_policy(logp_q, reward, beta), logp_q)


def kl_tilted_small_step_approx(logp_q, reward, beta):
    """Large-beta approximation KL(q_tilde || q) ~ Var_q(R) / (2 beta^2) (second order in 1/beta).

    ``beta`` is a scalar or broadcasts against ``logp_q[..., :1]`` (one beta per position)."""
    _tilt_args(logp_q, reward, beta)
    lq = _f(logp_q)
    q = jnp.exp(lq)
    r = jnp.broadcast_to(_f(reward), lq.shape)
    mean = jnp.sum(q * r, axis=-1, keepdims=True)
    var = jnp.sum(jnp.where(q > 0, q * (r - mean) ** 2, 0.0), axis=-1, keepdims=True)
    return (var / (2.0 * jnp.asarray(beta, var.dtype) ** 2))[..., 0]


# ----------------------------------------------------------------------------------------------
# Fisher quadratic


def fisher_quadratic_logits(logp, delta_logits):
    """1/2 dz^T (diag p - p p^T) dz per position: the Fisher of a softmax in logit space, i.e. the
    second-order term of KL(p_{z+dz} || p_z) (Prop 3.2 in logit coordinates). Computed as
    1/2 Var_p(dz) = 1/2 sum_v p_v (dz_v - E_p dz)^2, which is >= 0 by construction."""
    _require_logprobs("logp", logp)
    require_nonempty("delta_logits", delta_logits)
    require_finite("delta_logits", delta_logits)
    require_same_shape("logp", logp, "delta_logits", delta_logits)
    p = jnp.exp(_f(logp))
    dz = _f(delta_logits)
    mean = jnp.sum(p * dz, axis=-1, keepdims=True)
    return 0.5 * jnp.sum(p * (dz - mean) ** 2, axis=-1)


def fisher_quadratic_params(logits_fn, params, direction, reduce: str = "sum"):
    """1/2 D^T F D with F = sum_n J_n^T (diag p_n - p_n p_n^T) J_n, J_n the logit Jacobian at position n.

    ``logits_fn(params) -> [..., V]``; ``direction`` has the pytree structure of ``params``. Uses one
    ``jax.jvp`` (no dense Fisher). ``reduce`` = "sum" (sequence KL) or "mean" (token-mean KL) over
    positions. Second-order term of KL(pi_{theta+D} || pi_theta) (paper Prop 3.2)."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"Argument `reduce` must be 'sum' or 'mean', got {reduce!r}.")
    s_p, s_d = jax.tree_util.tree_structure(params), jax.tree_util.tree_structure(direction)
    if s_p != s_d:
        raise ValueError(f"Argument `direction` must have the pytree structure of `params`, got {s_d} and {s_p}.")
    for lp, ld in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(direction)):
        require_same_shape("params", lp, "direction", ld)
        require_finite("direction", ld)
    direction = jax.tree_util.tree_map(lambda a, d: jnp.asarray(d, jnp.asarray(a).dtype), params, direction)
    logits, dz = jax.jvp(logits_fn, (params,), (direction,))
    require_nonempty("logits_fn(params)", logits)
    quad = fisher_quadratic_logits(jax.nn.log_softmax(_f(logits), axis=-1), _f(dz))
    return jnp.sum(quad) if reduce == "sum" else jnp.mean(quad)


# ----------------------------------------------------------------------------------------------
# bounds


def prop31_bound(kl_tilted_value):
    """Prop 3.1 (one-step leash): KL(pi_+ || pi) <= (1 + o(1)) KL(q_tilde || pi); returns the leading term."""
    _require_nonneg("kl_tilted_value", kl_tilted_value)
    return _f(kl_tilted_value)


def prop32_fisher_norm_bound(K):
    """Prop 3.2: if KL <= K then the Fisher norm sqrt(D^T F D) <= sqrt(2K) (leading order)."""
    _require_nonneg("K", K)
    return jnp.sqrt(2.0 * _f(K))


def prop32_euclid_bound(K, mu):
    """Prop 3.2: if KL <= K and F >= mu I on the update subspace then |D|_2 <= sqrt(2K / mu) (leading order).

    With K the exact Fisher quadratic 1/2 D^T F D and D in that subspace the bound is exact."""
    _require_nonneg("K", K)
    _require_scalar_positive("mu", mu)
    return jnp.sqrt(2.0 * _f(K) / _f(mu))


def layer_schur_bound(delta_W, mu_W):
    """Per-layer Prop 3.2: |dW|_F <= sqrt(2 delta_W / mu_W), delta_W = 1/2 vec(dW)^T S_W vec(dW),
    mu_W = lambda_min(S_W) (on the subspace dW lives in), S_W the Schur complement of the Fisher."""
    _require_nonneg("delta_W", delta_W)
    _require_scalar_positive("mu_W", mu_W)
    return jnp.sqrt(2.0 * _f(delta_W) / _f(mu_W))


def schur_complement(F, idx, ridge: float = 0.0):
    """S_W = F_WW - F_W,rest F_rest,rest^+ F_rest,W for the block ``idx`` of a dense symmetric PSD ``F``.

    1/2 w^T S_W w = min over x of 1/2 [w; x]^T F [w; x] (the rest-block completion minimising the
    quadratic). F_rest,rest is inverted as a pseudo-inverse (eigenvalues <= n * eps * lambda_max are
    dropped), which is exact for PSD F; with ``ridge > 0`` it solves with F_rest,rest + ridge I instead."""
    require_nonempty("F", F)
    if np.ndim(F) != 2 or np.shape(F)[0] != np.shape(F)[1]:
        raise ValueError(f"Argument `F` must be a square matrix, got shape {tuple(np.shape(F))}.")
    require_finite("F", F)
    n = np.shape(F)[0]
    idx = np.unique(np.asarray(idx, dtype=np.int64).reshape(-1))
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"Argument `idx` must be a non-empty set of indices in [0, {n}), got {idx.tolist()}.")
    if float(ridge) < 0:
        raise ValueError(f"Argument `ridge` must be non-negative, got {ridge}.")
    rest = np.setdiff1d(np.arange(n), idx)
    F = _f(F)
    F = 0.5 * (F + F.T)
    Fww = F[np.ix_(idx, idx)]
    if rest.size == 0:
        return Fww
    Fwr = F[np.ix_(idx, rest)]
    Frr = F[np.ix_(rest, rest)]
    if ridge > 0:
        X = jnp.linalg.solve(Frr + ridge * jnp.eye(rest.size, dtype=F.dtype), Fwr.T)
    else:
        lam, U = jnp.linalg.eigh(Frr)
        cut = rest.size * jnp.finfo(F.dtype).eps * jnp.maximum(jnp.max(jnp.abs(lam)), jnp.finfo(F.dtype).tiny)
        inv = jnp.where(lam > cut, 1.0 / jnp.where(lam > cut, lam, 1.0), 0.0)
        X = (U * inv) @ (U.T @ Fwr.T)
    S = Fww - Fwr @ X
    return 0.5 * (S + S.T)


def mu_min(S, range_rtol: float | None = None):
    """Smallest eigenvalue of the symmetric matrix ``S`` (the mu of Prop 3.2 / mu_W of the Schur bound).

    With ``range_rtol`` set, the smallest eigenvalue above range_rtol * lambda_max: the curvature floor
    on the range of S (the update subspace when S is singular, e.g. softmax shift invariance)."""
    require_nonempty("S", S)
    if np.ndim(S) != 2 or np.shape(S)[0] != np.shape(S)[1]:
        raise ValueError(f"Argument `S` must be a square matrix, got shape {tuple(np.shape(S))}.")
    require_finite("S", S)
    S = _f(S)
    lam = jnp.linalg.eigvalsh(0.5 * (S + S.T))
    if range_rtol is None:
        return lam[0]
    _require_scalar_positive("range_rtol", range_rtol)
    cut = range_rtol * lam[-1]
    return jnp.min(jnp.where(lam > cut, lam, jnp.inf))


def _eps_pair(epsilon, epsilon_high):
    require_open_unit("epsilon", epsilon)
    if epsilon_high is None:
        epsilon_high = epsilon
    else:
        require_positive("epsilon_high", epsilon_high)
    return float(epsilon), float(epsilon_high)


def clip_only_per_token_bound(epsilon, epsilon_high=None):
    """Largest |log ratio| a ratio clipped to [1 - epsilon, 1 + epsilon_high] can have:
    max(-log(1 - epsilon), log(1 + epsilon_high)) (epsilon_high defaults to epsilon)."""
    lo, hi = _eps_pair(epsilon, epsilon_high)
    return max(-math.log1p(-lo), math.log1p(hi))


def clip_only_bound(expected_len, epsilon, epsilon_high=None):
    """Clip-only leash (beta = 0, DAPO): per-step KL <= E[T] max(-log(1 - eps_low), log(1 + eps_high)).

    A heuristic bound in the paper: it bounds the summed |log ratio| of clipped ratios over a sequence."""
    _require_nonneg("expected_len", expected_len)
    return _f(expected_len) * clip_only_per_token_bound(epsilon, epsilon_high)
