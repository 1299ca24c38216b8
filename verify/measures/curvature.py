"""Fisher curvature on a run's probe set at its base (Gate I weight leash, gate2.curvature, the regime map).

- ``fisher_root`` / ``restricted_fisher``: the dense Fisher of the completion logits over a few named
  parameter tensors (the others fixed at the base), F = A^T A / sum(m);
- ``FisherCurvature``: Fisher-vector products and Rayleigh quotients of directions on the transformer-block
  kernels, top eigenpair by Lanczos (``theory.curvature``);
- ``update_curvature``: the Rayleigh quotient of a run's own update direction.
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from theory.curvature import fisher_vp, lanczos_top_eigs
from theory.kl import fisher_quadratic_logits, layer_schur_bound, mu_min, schur_complement
from toy_models.metrics import masked_mean
from toy_models.transformer import apply, flat_params, matrix_name, start_index, unflatten_params
from verify.measures.probe import probe_set
from verify.measures.spectra import top_k

FISHER_PROBE = 16  # probe sequences used for the dense Fisher of gate1.weight_leash
MAX_JACOBIAN_ENTRIES = 2e8  # refuse a dense Jacobian larger than this (about 1.6 GB in float64)
LANCZOS_ITERS = 12


@functools.lru_cache(maxsize=8)
def fisher_root(graphdef, names: tuple, P: int):
    """Jitted A(x) with F = A^T A / sum(m): the Fisher of the completion logits over the parameters ``names``
    (flattened into x, others from ``flat0``), A = sqrt(m p_v) (J_v - sum_u p_u J_u), the square root of
    diag p - p p^T. One compiled program (the eager Jacobian compiled hundreds of small ones)."""

    def root(x, flat0, template, tokens_NL, start, m_NC):
        def logits(x):
            parts, i = dict(flat0), 0
            for n in names:
                k = flat0[n].size
                parts[n] = x[i:i + k].reshape(flat0[n].shape)
                i += k
            out = apply(graphdef, unflatten_params(template, parts), tokens_NL[:, :-1], start)[0]
            return out[:, P - 1:].astype(jnp.float32)

        z = logits(x)
        J = jax.jacfwd(logits)(x)  # (N, C, V, P)
        p = jax.nn.softmax(z, axis=-1)
        Jc = J - jnp.einsum("ncvp,ncv->ncp", J, p)[:, :, None, :]
        return (jnp.sqrt(p * m_NC[..., None])[..., None] * Jc).reshape(-1, x.size)

    return jax.jit(root)


def restricted_fisher(ctx, run, names) -> tuple[np.ndarray, dict]:
    """(dense Fisher over the parameters ``names``, others fixed at the base, on the first FISHER_PROBE sequences
    of the run's probe set, the base weights by name); the flat order is the concatenation of the named tensors."""
    ps = probe_set(ctx, run)
    base, flat0, P = ps.base, ps.flat0, ps.prompt_len
    C, vocab = base.completion_len, run.spec.base.model.vocab_size
    tokens_NL, mask_NC = ps.tokens_NL[:FISHER_PROBE], ps.mask_NC[:FISHER_PROBE]
    entries = int(tokens_NL.shape[0]) * C * vocab * sum(flat0[n].size for n in names)
    if entries > MAX_JACOBIAN_ENTRIES:
        raise ValueError(f"The dense Fisher over {names} needs a Jacobian of {entries:.3g} entries, above the "
                         f"{MAX_JACOBIAN_ENTRIES:.0e} this check allows; use a smaller model.")
    start = start_index(tokens_NL[:, :P])
    x0 = np.concatenate([flat0[n].ravel() for n in names])
    m = np.asarray(mask_NC, np.float32)
    A = np.asarray(fisher_root(base.graphdef, tuple(names), P)(x0, flat0, base.params, tokens_NL, start, m), np.float64)
    return A.T @ A / float(m.sum()), flat0


def _is_block_kernel(dotted: str, arr) -> bool:
    name = matrix_name(dotted)
    return name is not None and name.startswith("block") and np.ndim(arr) == 2 and dotted.endswith("kernel")


def _logits_fn(graphdef, tokens_NL, prompt_len):
    start = start_index(tokens_NL[:, :prompt_len])
    return lambda p: apply(graphdef, p, tokens_NL[:, :-1], start)[0][:, prompt_len - 1:].astype(jnp.float32)


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _fisher_rq(graphdef, params, direction, tokens_NL, mask_NC, prompt_len):
    """d^T F d (token mean over the masked completion positions; F = sum J^T (diag p - p p^T) J): one jvp."""
    logits, dz = jax.jvp(_logits_fn(graphdef, tokens_NL, prompt_len), (params,), (direction,))
    return masked_mean(2.0 * fisher_quadratic_logits(jax.nn.log_softmax(logits, axis=-1), dz), mask_NC)


@partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _fisher_vp(graphdef, params, direction, tokens_NL, mask_NC, prompt_len):
    """F d with the same F and normalisation as ``_fisher_rq`` (theory.curvature.fisher_vp)."""
    return fisher_vp(_logits_fn(graphdef, tokens_NL, prompt_len), params, direction, mask_NC)


class FisherCurvature:
    """Fisher curvature of block-kernel directions at the base parameters on one run's probe set."""

    def __init__(self, ctx, run):
        ps = probe_set(ctx, run)
        self.graphdef, self.P = ps.base.graphdef, ps.prompt_len
        self.flat0 = ps.flat0
        self.template = ps.base.params
        self.params0 = ps.params0
        self.tokens, self.mask = ps.tokens_NL, ps.mask_NC
        self.keys = sorted(k for k, v in self.flat0.items() if _is_block_kernel(k, v))

    def tree(self, d: dict):
        """A full parameter tree holding ``d`` on its block kernels and zeros elsewhere."""
        return unflatten_params(self.template, {k: (d[k] if k in d else np.zeros_like(v)) for k, v in self.flat0.items()})

    def rq(self, d: dict) -> float:
        """d^T F d / |d|^2 (nats per token per unit squared parameter norm)."""
        norm2 = sum(float(np.sum(np.square(d[k], dtype=np.float64))) for k in self.keys)
        return float(_fisher_rq(self.graphdef, self.params0, self.tree(d), self.tokens, self.mask, self.P)) / norm2

    def top_eig(self, seed: int, iters: int = LANCZOS_ITERS):
        """Top eigenvalue and eigenvector of F restricted to the block kernels (theory.curvature Lanczos)."""

        def matvec(d):
            fv = flat_params(_fisher_vp(self.graphdef, self.params0, self.tree(d), self.tokens, self.mask, self.P))
            return {k: fv[k] for k in self.keys}

        example = {k: np.zeros(self.flat0[k].shape, np.float32) for k in self.keys}
        evals, vecs = lanczos_top_eigs(matvec, example, 1, iters, jax.random.key(seed))
        return float(evals[0]), {k: np.asarray(v, np.float32) for k, v in vecs[0].items()}

    def direction(self, run) -> dict:
        """The fp32 master update final - base of ``run`` on the block kernels."""
        f1 = run.snapshot("final", master=True)
        return {k: np.asarray(f1[k], np.float32) - self.flat0[k] for k in self.keys}

    def split(self, d: dict) -> tuple[dict, dict]:
        """(principal part U_k U_k^T dW V_k V_k^T, the rest dW - principal) per block matrix, in (out, in) layout."""
        prin, rest = {}, {}
        for k in self.keys:
            W0 = self.flat0[k].T.astype(np.float64)  # kernels are (in, out)
            U, _, Vt = np.linalg.svd(W0, full_matrices=False)
            kk = top_k(W0)
            Uk, Vk = U[:, :kk], Vt[:kk].T
            dW = d[k].T.astype(np.float64)
            p = Uk @ (Uk.T @ dW @ Vk) @ Vk.T
            prin[k] = p.T.astype(np.float32)
            rest[k] = (dW - p).T.astype(np.float32)
        return prin, rest

    def random(self, seed: int) -> dict:
        """An isotropic Gaussian direction on the block kernels (seeded)."""
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal(self.flat0[k].shape).astype(np.float32) for k in self.keys}


def update_curvature(ctx, run) -> float:
    """Fisher Rayleigh quotient of the run's own update direction at its base (memoised)."""

    def compute():
        c = FisherCurvature(ctx, run)
        return c.rq(c.direction(run))

    return ctx.memo(("update_curvature", run.directory.name), compute)


def unembedding_leash(ctx, run) -> dict:
    """Prop 3.2 per layer for the unembedding W of a run: the dense Fisher over (W, final layer norm), S_W its
    Schur complement, mu_W the smallest eigenvalue of S_W above 1e-6 lambda_max (its range: softmax shift
    invariance makes S_W singular), dW = fp32 master final - base, delta_W = 1/2 dW^T S_W dW. Returns
    {norm: |dW|_F, bound: sqrt(2 delta_W / mu_W) (inf if mu_W = 0), mu, delta, null_share: share of |dW|^2 in the
    null space of S_W}."""
    W, rest = "unembed.kernel", ["ln_f.scale", "ln_f.bias"]
    F, flat0 = restricted_fisher(ctx, run, [W, *rest])
    nW = flat0[W].size
    S = np.asarray(schur_complement(F, np.arange(nW)), np.float64)
    mu = float(mu_min(S, range_rtol=1e-6))
    dW = (np.asarray(run.snapshot("final", master=True)[W], np.float64) - flat0[W]).ravel()
    delta = 0.5 * float(dW @ S @ dW)
    bound = float(layer_schur_bound(delta, mu)) if mu > 0 else float("inf")
    lam, vec = np.linalg.eigh(S)
    null = vec[:, lam <= 1e-6 * lam.max()]
    null_share = float(np.sum((null.T @ dW) ** 2) / max(dW @ dW, 1e-300))
    return {"norm": float(np.linalg.norm(dW)), "bound": bound, "mu": mu, "delta": delta, "null_share": null_share}
