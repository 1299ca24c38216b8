"""gate1.weight_leash's dense Fisher (verify/measures/curvature.py): the jitted root A squares to the softmax Fisher of the completion logits,
F = sum_(n,c) m_nc J_nc^T (diag p - p p^T) J_nc / sum(m), computed here directly from an eager Jacobian."""

import jax
import jax.numpy as jnp
import numpy as np

from toy_models.transformer import ModelConfig, apply, flat_params, init_params, start_index, unflatten_params
from verify.measures.curvature import fisher_root

NAMES = ("ln_f.scale", "ln_f.bias")


def test_fisher_root_squares_to_the_softmax_fisher_of_the_logits():
    cfg = ModelConfig(vocab_size=11, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=10)
    graphdef, params = init_params(cfg, 0)
    flat0 = {k: jnp.asarray(v, jnp.float32) for k, v in flat_params(params).items()}
    rng = np.random.default_rng(0)
    P, L, N = 4, 9, 3
    tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (N, L)), jnp.int32)
    start = start_index(tokens[:, :P])
    m = jnp.asarray(np.maximum(rng.integers(0, 2, (N, L - P)), np.eye(N, L - P)), jnp.float32)  # every row counts
    x0 = jnp.concatenate([flat0[n].ravel() for n in NAMES])

    A = np.asarray(fisher_root(graphdef, NAMES, P)(x0, flat0, params, tokens, start, m), np.float64)
    F_root = A.T @ A / float(m.sum())

    def logits(x):
        parts = dict(flat0)
        parts[NAMES[0]], parts[NAMES[1]] = x[: cfg.d_model], x[cfg.d_model:]
        return apply(graphdef, unflatten_params(params, parts), tokens[:, :-1], start)[0][:, P - 1:]

    J = np.asarray(jax.jacrev(logits)(x0), np.float64)  # (N, C, V, X)
    p = np.asarray(jax.nn.softmax(logits(x0), axis=-1), np.float64)
    w = np.asarray(m, np.float64)
    second = np.einsum("nc,ncv,ncvx,ncvy->xy", w, p, J, J)
    mean_J = np.einsum("ncv,ncvx->ncx", p, J)
    F = (second - np.einsum("nc,ncx,ncy->xy", w, mean_J, mean_J)) / w.sum()
    scale = np.abs(F).max()
    np.testing.assert_allclose(F_root, F, atol=1e-5 * scale)
    assert np.abs(second / w.sum() - F).max() > 100 * 1e-5 * scale  # the centring matters: an uncentred root fails
