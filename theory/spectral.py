"""Gate II: model geometry (docs/science.md section 3 "Gate II" and the section 4 metric definitions).

Contents
- spectra and top-k singular subspaces, principal angles and the sin-theta distance;
- the perturbation bounds of Gate II, each returned as ``(lhs, rhs)`` so a caller sees how tight
  the bound is: Weyl, Mirsky, Ky Fan (paper form ``k |dW|_2`` and the classical sharper form),
  Wedin sin-theta in the paper's unperturbed-gap form and in the classical safe form;
- the section 4 metrics: normalised spectral shift, principal (LIFT) and low-magnitude masks,
  mask overlap and its random level, principal energy fraction and its random level, Jaccard and
  its independent-Bernoulli baseline, row / column ratios, stable rank and top-k energy share.

Conventions
- W has shape (m, n), r = min(m, n); singular values are sorted in decreasing order and
  sigma_{r+1} := 0, so the gap gamma_k = sigma_k - sigma_{k+1} is defined for every k in 1..r.
- Every function computes in at least fp32 (bf16 / fp16 inputs are promoted; fp64 stays fp64 when
  x64 is enabled, which ``verify/theory_spectral.py`` uses). numpy and jax arrays are accepted.
- Ratios that are 0/0 (a zero update, a zero matrix, two empty masks) come back as NaN.
- Internally the top-k columns are selected by a 0/1 column mask rather than by slicing, so the
  array shapes (and hence compiled kernels) do not depend on k.
- Argument checks raise ``ValueError`` naming the argument; value checks are skipped under tracing,
  so the functions stay jit-able with ``k`` and ``alpha`` static.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from theory.validate import (
    is_concrete,
    require_finite,
    require_matrix,
    require_ndim,
    require_nonempty,
    require_open_unit,
    require_rank_index,
    require_same_shape,
)

__all__ = [
    "singular_values",
    "top_k_subspaces",
    "spectral_gap",
    "principal_angles",
    "sin_theta_norm",
    "weyl",
    "mirsky",
    "ky_fan",
    "ky_fan_sharp",
    "wedin_paper",
    "wedin_safe",
    "normalized_spectral_shift",
    "principal_mask",
    "low_magnitude_mask",
    "mask_count",
    "overlap",
    "overlap_random_level",
    "principal_energy_fraction",
    "principal_energy_random_level",
    "jaccard",
    "jaccard_random_baseline",
    "row_ratios",
    "col_ratios",
    "stable_rank",
    "top_k_energy_share",
    "gate2_bounds",
    "principal_angles_from_factors",
    "principal_mask_from_factors",
    "principal_energy_from_factors",
    "nss_from_singular_values",
    "stable_rank_from_singular_values",
    "spectral_gap_from_singular_values",
]


# ----------------------------------------------------------------------------------------------
# helpers


def _float(x):
    """``x`` as a jnp array of at least fp32 (fp64 kept when x64 is on)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _matrix(name: str, W):
    require_matrix(name, W)
    return _float(W)


def _pair(name_a: str, a, name_b: str, b):
    a = _matrix(name_a, a)
    b = _matrix(name_b, b)
    require_same_shape(name_a, a, name_b, b)
    dtype = jnp.promote_types(a.dtype, b.dtype)
    return a.astype(dtype), b.astype(dtype)


def _mask(name: str, M):
    """A 2-D mask (bool or 0/1 numbers) as a bool array."""
    require_ndim(name, M, 2)
    require_nonempty(name, M)
    M = jnp.asarray(M)
    if M.dtype != jnp.bool_:
        require_finite(name, M)
        M = M != 0
    return M


def _rank(name: str, k, W) -> int:
    require_rank_index(name, k, min(W.shape))
    return int(k)


def _safe_div(num, den):
    """num / den with 0 / 0 (or anything / 0) read as NaN."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), jnp.nan)


def _svd(W):
    """Thin SVD: U (m, r), s (r,) decreasing, V (n, r).

    Always the same LAPACK call on the tall orientation (rows >= columns): every SVD in this module
    then runs on one of two shapes, (max(m, n), r) or (r, r), which keeps compilation cheap when many
    shapes are seen (tests, verify). Singular values come from the same call."""
    if W.shape[0] < W.shape[1]:
        V, s, U = _svd(W.T)
        return U, s, V
    U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
    return U, s, Vt.T


def _sv(W):
    """Singular values, decreasing (via ``_svd``)."""
    return _svd(W)[1]


def _colmask(r: int, k, dtype):
    """1.0 for the first k of r columns, 0.0 after (k may be traced)."""
    return (jnp.arange(r) < k).astype(dtype)


def _opnorm(A):
    return _sv(A)[0]


def _gap(s, k):
    """gamma_k = sigma_k - sigma_{k+1} with sigma_{r+1} := 0 (k is 1-based, may be traced)."""
    ext = jnp.concatenate([s, jnp.zeros((1,), s.dtype)])
    return ext[k - 1] - ext[k]


def _resolution(s):
    """Gaps at or below eps * sigma_1 are read as 0: a float SVD cannot tell them from a repeated value."""
    return jnp.finfo(s.dtype).eps * s[0]


def _sines_desc(A0, A1, mask):
    """Singular values (decreasing) of (I - A0k A0k^T) A1k; the first k are the sines of the principal angles."""
    A0m = A0 * mask
    A1m = A1 * mask
    R = A1m - A0m @ (A0m.T @ A1m)
    return jnp.clip(_sv(R), 0.0, 1.0)


def _cosines_desc(A0, A1, mask):
    """Singular values (decreasing) of A0k^T A1k; the first k are the cosines of the principal angles."""
    C = (A0 * mask).T @ (A1 * mask)
    return jnp.clip(_sv(C), 0.0, 1.0)


def _angles(A0, A1, mask, k):
    """Principal angles, length r, increasing in the first k entries (radians): arcsin of the sine
    where it is small, arccos of the cosine otherwise. Entries past k are meaningless."""
    r = mask.shape[0]
    cos = _cosines_desc(A0, A1, mask)
    sin = _sines_desc(A0, A1, mask)[jnp.clip(k - 1 - jnp.arange(r), 0, r - 1)]
    return jnp.where(sin * sin <= 0.5, jnp.arcsin(sin), jnp.arccos(cos))


def mask_count(size: int, alpha: float) -> int:
    """Number of entries a share-``alpha`` mask keeps: round(alpha * size), halves rounded up."""
    return int(math.floor(alpha * size + 0.5))


def _top_count_mask(score, count):
    """Bool mask of the ``count`` largest scores; ties go to the lower row-major index."""
    flat = score.reshape(-1)
    order = jnp.argsort(-flat, stable=True)
    keep = jnp.arange(flat.shape[0]) < count
    return jnp.zeros(flat.shape, bool).at[order].set(keep).reshape(score.shape)


# ----------------------------------------------------------------------------------------------
# jitted kernels: k and counts are traced, so one compilation serves every k of a shape


@jax.jit
def _k_frames(W):
    return _svd(W)


@jax.jit
def _k_sv(W):
    return _sv(W)


@jax.jit
def _k_angles(W0, W1, k):
    U0, _, V0 = _svd(W0)
    U1, _, V1 = _svd(W1)
    mask = _colmask(U0.shape[1], k, U0.dtype)
    return _angles(U0, U1, mask, k), _angles(V0, V1, mask, k)


def _sin_theta(W0, W1, k):
    U0, _, V0 = _svd(W0)
    U1, _, V1 = _svd(W1)
    mask = _colmask(U0.shape[1], k, U0.dtype)
    return jnp.maximum(_sines_desc(U0, U1, mask)[0], _sines_desc(V0, V1, mask)[0])


_k_sin_theta = jax.jit(_sin_theta)


@jax.jit
def _k_shift_bounds(W0, dW, k):
    """Weyl, Mirsky and Ky Fan (both right sides) from one set of SVDs."""
    shift = _sv(W0 + dW) - _sv(W0)
    sd = _sv(dW)
    top = _colmask(sd.shape[0], k, sd.dtype)
    return dict(
        weyl=(jnp.max(jnp.abs(shift)), sd[0]),
        mirsky=(jnp.sum(shift * shift), jnp.sum(dW * dW)),
        ky_fan=(jnp.abs(jnp.sum(shift * top)), k * sd[0]),
        ky_fan_sharp=(jnp.abs(jnp.sum(shift * top)), jnp.sum(sd * top)),
    )


@jax.jit
def _k_wedin(W0, dW, k):
    s0 = _sv(W0)
    gap = _gap(s0, k)
    gap = jnp.where(gap > _resolution(s0), gap, 0.0)
    nd = _opnorm(dW)
    lhs = _sin_theta(W0, W0 + dW, k)
    paper = jnp.where(gap > 0, nd / jnp.where(gap > 0, gap, 1), jnp.inf)
    den = gap - nd
    safe = jnp.where((gap > 0) & (den > 0), nd / jnp.where(den > 0, den, 1), jnp.inf)
    return lhs, paper, safe


@jax.jit
def _k_nss(W0, W1):
    s0 = _sv(W0)
    return _safe_div(jnp.linalg.norm(_sv(W1) - s0), jnp.linalg.norm(s0))


@jax.jit
def _k_principal_mask(W0, k, count):
    U, s, V = _svd(W0)
    recon = (U * (s * _colmask(s.shape[0], k, s.dtype))) @ V.T
    return _top_count_mask(jnp.abs(recon), count)


@jax.jit
def _k_low_mask(W0, count):
    return _top_count_mask(-jnp.abs(W0), count)


@jax.jit
def _k_energy(W0, dW, k):
    U, s, V = _svd(W0)
    mask = _colmask(s.shape[0], k, s.dtype)
    P = (U * mask).T @ dW @ (V * mask)
    return _safe_div(jnp.sum(P * P), jnp.sum(dW * dW))


@jax.jit
def _k_mask_pair(A, B):
    inter = jnp.sum(A & B).astype(jnp.float32)
    return inter, jnp.sum(A | B).astype(jnp.float32), jnp.sum(B).astype(jnp.float32)


@jax.jit
def _k_ratios(M):
    M = M.astype(jnp.float32)
    return jnp.mean(M, axis=1), jnp.mean(M, axis=0), jnp.mean(M)


@jax.jit
def _k_energy_share(W, k):
    s = _sv(W)
    s2 = s * s
    return _safe_div(jnp.sum(s2 * _colmask(s.shape[0], k, s.dtype)), jnp.sum(s2)), _safe_div(jnp.sum(s2), s2[0])


# ----------------------------------------------------------------------------------------------
# spectra and subspaces


def singular_values(W):
    """Singular values of W (length min(m, n), decreasing)."""
    return _k_sv(_matrix("W", W))


def top_k_subspaces(W, k: int):
    """Top-k singular subspaces: returns (U_k (m, k), s (all min(m, n) singular values), V_k (n, k)).

    When sigma_k = sigma_{k+1} the top-k subspace is not unique; the returned basis is one choice.
    """
    W = _matrix("W", W)
    k = _rank("k", k, W)
    U, s, V = _k_frames(W)
    return U[:, :k], s, V[:, :k]


def spectral_gap(W, k: int):
    """gamma_k = sigma_k(W) - sigma_{k+1}(W), with sigma_{min(m,n)+1} := 0 (the Gate II gap)."""
    W = _matrix("W", W)
    k = _rank("k", k, W)
    return _gap(_k_sv(W), k)


def principal_angles(W0, W1, k: int):
    """Principal angles (radians, increasing) between top-k singular subspaces of W0 and W1.

    docs/science.md section 4: cos theta_i = sigma_i(U0k^T U1k), clipped to [0, 1]; same for V.
    Small angles are read from the sines sigma(U1k - U0k U0k^T U1k) for accuracy (as scipy does).
    Returns (angles_U, angles_V), each of length k.
    """
    W0, W1 = _pair("W0", W0, "W1", W1)
    k = _rank("k", k, W0)
    au, av = _k_angles(W0, W1, k)
    return au[:k], av[:k]


def sin_theta_norm(W0, W1, k: int):
    """max(|sin Theta(U0k, U1k)|_2, |sin Theta(V0k, V1k)|_2): the largest principal-angle sine, the Wedin lhs."""
    W0, W1 = _pair("W0", W0, "W1", W1)
    k = _rank("k", k, W0)
    return _k_sin_theta(W0, W1, k)


# ----------------------------------------------------------------------------------------------
# Gate II bounds, each (lhs, rhs)


def weyl(W0, dW):
    """Weyl's inequality: lhs = max_i |sigma_i(W0 + dW) - sigma_i(W0)|, rhs = |dW|_2."""
    W0, dW = _pair("W0", W0, "dW", dW)
    return _k_shift_bounds(W0, dW, 1)["weyl"]


def mirsky(W0, dW):
    """Mirsky's inequality: lhs = sum_i (sigma_i(W0 + dW) - sigma_i(W0))^2, rhs = |dW|_F^2."""
    W0, dW = _pair("W0", W0, "dW", dW)
    return _k_shift_bounds(W0, dW, 1)["mirsky"]


def ky_fan(W0, dW, k: int):
    """Ky Fan, paper form: lhs = |sum_{i<=k} sigma_i(W0+dW) - sum_{i<=k} sigma_i(W0)|, rhs = k |dW|_2.

    The classical sharper right side (the Ky Fan k-norm of dW) is in ``ky_fan_sharp``.
    """
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    return _k_shift_bounds(W0, dW, k)["ky_fan"]


def ky_fan_sharp(W0, dW, k: int):
    """Ky Fan, classical form (triangle inequality of the Ky Fan k-norm): same lhs as ``ky_fan``,
    rhs = sum_{i<=k} sigma_i(dW) <= k |dW|_2."""
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    return _k_shift_bounds(W0, dW, k)["ky_fan_sharp"]


def wedin_paper(W0, dW, k: int):
    """Wedin sin-theta, paper form (unperturbed gap, paper Gate II):
    lhs = max(|sin Theta(U_k, U_k+)|_2, |sin Theta(V_k, V_k+)|_2), rhs = |dW|_2 / gamma_k(W0).

    Not a theorem as stated: it can fail for |dW|_2 < gamma_k (see ``verify/theory_spectral.py``);
    for |dW|_2 >= gamma_k it holds trivially since rhs >= 1 >= lhs. Where the safe form applies it
    caps the paper ratio lhs/rhs by 1 / (1 - |dW|_2/gamma_k), and lhs <= 1 caps it by
    gamma_k / |dW|_2, so the paper form is never off by more than a factor 2.
    When gamma_k is 0 (or below the float resolution eps * sigma_1) the top-k subspace is not
    unique and rhs = inf.
    """
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    lhs, paper, _ = _k_wedin(W0, dW, k)
    return lhs, paper


def wedin_safe(W0, dW, k: int):
    """Wedin sin-theta, classical safe form (Wedin 1972 with the perturbed gap bounded by Weyl):
    lhs as in ``wedin_paper``, rhs = |dW|_2 / (gamma_k - |dW|_2).

    Valid only when |dW|_2 < gamma_k (then sigma_k(W0 + dW) - sigma_{k+1}(W0) >= gamma_k - |dW|_2 > 0);
    otherwise rhs = inf (no statement). gamma_k = 0 (or below eps * sigma_1) also gives rhs = inf.
    """
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    lhs, _, safe = _k_wedin(W0, dW, k)
    return lhs, safe


# ----------------------------------------------------------------------------------------------
# section 4 metrics


def normalized_spectral_shift(W0, W1):
    """NSS = |sigma(W1) - sigma(W0)|_2 / |sigma(W0)|_2 (NaN for W0 = 0)."""
    W0, W1 = _pair("W0", W0, "W1", W1)
    return _k_nss(W0, W1)


def principal_mask(W0, k: int, alpha: float):
    """Principal mask (LIFT): score each entry by |(rank-k truncated SVD of W0)_ij| and keep the top
    ``alpha`` share, exactly ``mask_count(m * n, alpha)`` entries; ties go to the lower row-major index
    (exact ties are rare: the reconstruction carries SVD round-off).

    If sigma_k = sigma_{k+1} the rank-k reconstruction is not unique; the mask follows the SVD's choice.
    """
    W0 = _matrix("W0", W0)
    k = _rank("k", k, W0)
    require_open_unit("alpha", alpha)
    return _k_principal_mask(W0, k, mask_count(W0.size, alpha))


def low_magnitude_mask(W0, alpha: float):
    """Low-magnitude mask: the bottom ``alpha`` share of |W0| (``mask_count(m * n, alpha)`` entries,
    ties go to the lower row-major index)."""
    W0 = _matrix("W0", W0)
    require_open_unit("alpha", alpha)
    return _k_low_mask(W0, mask_count(W0.size, alpha))


def overlap(mask_x, mask):
    """Overlap(M_x, M) = |M_x n M| / |M| (docs/science.md section 4); its random level is
    ``overlap_random_level(mask_x)``. An empty ``mask`` raises ValueError (NaN under tracing)."""
    mask_x = _mask("mask_x", mask_x)
    mask = _mask("mask", mask)
    require_same_shape("mask_x", mask_x, "mask", mask)
    inter, _, size = _k_mask_pair(mask_x, mask)
    if is_concrete(size) and float(size) == 0:
        raise ValueError("Argument `mask` selects no entry; overlap divides by |mask|.")
    return _safe_div(inter, size)


def overlap_random_level(mask_x):
    """Random level of ``overlap(mask_x, M)``: the density of M_x (expected overlap for a random M)."""
    return _k_ratios(_mask("mask_x", mask_x))[2]


def principal_energy_fraction(W0, dW, k: int):
    """|U0k U0k^T dW V0k V0k^T|_F^2 / |dW|_F^2 (= |U0k^T dW V0k|_F^2 / |dW|_F^2); NaN for dW = 0.
    Random level: ``principal_energy_random_level``."""
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    return _k_energy(W0, dW, k)


def principal_energy_random_level(m: int, n: int, k: int) -> float:
    """k^2 / (m n): the expected principal energy fraction of an isotropic Gaussian dW (exactly, since
    the fraction is Beta(k^2/2, (mn - k^2)/2) distributed)."""
    for name, v in (("m", m), ("n", n)):
        if int(v) != v or int(v) < 1:
            raise ValueError(f"Argument `{name}` must be a positive integer, got {v}.")
    require_rank_index("k", k, min(int(m), int(n)))
    return float(k) ** 2 / (float(m) * float(n))


def jaccard(A, B):
    """J(A, B) = |A n B| / |A u B| for two same-shape masks; NaN when both are empty."""
    A = _mask("A", A)
    B = _mask("B", B)
    require_same_shape("A", A, "B", B)
    inter, union, _ = _k_mask_pair(A, B)
    return _safe_div(inter, union)


def jaccard_random_baseline(p, q):
    """Expected Jaccard of independent Bernoulli masks of densities p and q (large-size limit):
    pq / (p + q - pq). NaN when p = q = 0."""
    for name, v in (("p", p), ("q", q)):
        if is_concrete(v) and not bool(np.all((np.asarray(v, np.float64) >= 0) & (np.asarray(v, np.float64) <= 1))):
            raise ValueError(f"Argument `{name}` must lie in [0, 1], got {v}.")
    p = _float(p)
    q = _float(q)
    return _safe_div(p * q, p + q - p * q)


def row_ratios(mask):
    """Row ratio (docs/science.md section 4): mean of the mask over each row, shape (m,)."""
    return _k_ratios(_mask("mask", mask))[0]


def col_ratios(mask):
    """Column ratio: mean of the mask over each column, shape (n,)."""
    return _k_ratios(_mask("mask", mask))[1]


def stable_rank(W):
    """Stable rank |W|_F^2 / |W|_2^2, in [1, rank(W)]; NaN for W = 0."""
    W = _matrix("W", W)
    return _k_energy_share(W, 1)[1]


def top_k_energy_share(W, k: int):
    """sum_{i<=k} sigma_i^2 / sum_i sigma_i^2: share of |W|_F^2 in the top-k directions; NaN for W = 0."""
    W = _matrix("W", W)
    k = _rank("k", k, W)
    return _k_energy_share(W, k)[0]


# ----------------------------------------------------------------------------------------------
# Gate II bounds from one set of SVDs


@jax.jit
def _k_gate2_bounds(W0, dW, k):
    """Every bound of ``_k_shift_bounds`` and ``_k_wedin`` from one SVD each of W0, W1 = W0 + dW and dW."""
    U0, s0, V0 = _svd(W0)
    U1, s1, V1 = _svd(W0 + dW)
    sd = _sv(dW)
    shift = s1 - s0
    top = _colmask(sd.shape[0], k, sd.dtype)
    ky_lhs = jnp.abs(jnp.sum(shift * top))
    gap = _gap(s0, k)
    gap = jnp.where(gap > _resolution(s0), gap, 0.0)
    nd = sd[0]
    mask = _colmask(U0.shape[1], k, U0.dtype)
    sin = jnp.maximum(_sines_desc(U0, U1, mask)[0], _sines_desc(V0, V1, mask)[0])
    paper = jnp.where(gap > 0, nd / jnp.where(gap > 0, gap, 1), jnp.inf)
    den = gap - nd
    safe = jnp.where((gap > 0) & (den > 0), nd / jnp.where(den > 0, den, 1), jnp.inf)
    return dict(
        weyl=(jnp.max(jnp.abs(shift)), nd),
        mirsky=(jnp.sum(shift * shift), jnp.sum(dW * dW)),
        ky_fan=(ky_lhs, k * nd),
        ky_fan_sharp=(ky_lhs, jnp.sum(sd * top)),
        wedin_paper=(sin, paper),
        wedin_safe=(sin, safe),
    )


def gate2_bounds(W0, dW, k: int) -> dict:
    """Every Gate II bound of docs/science.md section 3 from three SVDs: one of W0, one of W1 = W0 + dW, one of dW.

    Returns ``{name: (lhs, rhs)}`` for the names "weyl", "mirsky", "ky_fan", "ky_fan_sharp",
    "wedin_paper" and "wedin_safe", each pair the same as the function of that name returns
    (``weyl(W0, dW)``, ``mirsky(W0, dW)``, ``ky_fan(W0, dW, k)``, ``ky_fan_sharp(W0, dW, k)``,
    ``wedin_paper(W0, dW, k)``, ``wedin_safe(W0, dW, k)``), which together take about 17 SVDs.
    ``k`` applies to Ky Fan and Wedin; Weyl and Mirsky do not depend on it.
    """
    W0, dW = _pair("W0", W0, "dW", dW)
    k = _rank("k", k, W0)
    return _k_gate2_bounds(W0, dW, k)


# ----------------------------------------------------------------------------------------------
# section 4 metrics from precomputed (truncated) factors and spectra
#
# A large matrix can get its top-k factors from a truncated SVD (Lanczos, or the eigenvectors of a
# float64 Gram matrix) and its spectrum from the eigenvalues of that Gram matrix, without a full SVD.
# These functions take those pieces. Factors are (U_k (m, k), s_k (k,), V_k (n, k)) with orthonormal
# columns (not checked) and s_k decreasing, so that W ~ U_k diag(s_k) V_k^T.


def _factor(name: str, A):
    require_matrix(name, A)
    return _float(A)


@jax.jit
def _k_angles_from_factors(A0, A1):
    k = A0.shape[1]
    return _angles(A0, A1, jnp.ones((k,), A0.dtype), k)


def principal_angles_from_factors(A0_k, A1_k):
    """Principal angles (radians, increasing, length k) between the column spans of two orthonormal bases
    A0_k and A1_k of shape (m, k): docs/science.md section 4, cos theta_i = sigma_i(A0k^T A1k), small angles read
    from the sines sigma(A1k - A0k A0k^T A1k) as in ``principal_angles``.

    Pass the top-k left singular vectors of W0 and W1 for the U angles, the right ones for the V angles;
    with the vectors of a full SVD this equals ``principal_angles(W0, W1, k)``.
    """
    A0 = _factor("A0_k", A0_k)
    A1 = _factor("A1_k", A1_k)
    require_same_shape("A0_k", A0, "A1_k", A1)
    if A0.shape[1] > A0.shape[0]:
        raise ValueError(f"Arguments `A0_k` and `A1_k` must have at most as many columns as rows, got shape {tuple(A0.shape)}.")
    dtype = jnp.promote_types(A0.dtype, A1.dtype)
    return _k_angles_from_factors(A0.astype(dtype), A1.astype(dtype))


def _check_factors(U_k, s_k, V_k):
    U = _factor("U_k", U_k)
    V = _factor("V_k", V_k)
    s = jnp.asarray(s_k)
    require_ndim("s_k", s, 1)
    require_finite("s_k", s)
    if not (U.shape[1] == V.shape[1] == s.shape[0]):
        raise ValueError(
            f"Arguments `U_k`, `s_k` and `V_k` must share k, got shapes {tuple(U.shape)}, {tuple(s.shape)} and {tuple(V.shape)}."
        )
    dtype = jnp.promote_types(jnp.promote_types(U.dtype, V.dtype), _float(s).dtype)
    return U.astype(dtype), _float(s).astype(dtype), V.astype(dtype)


@jax.jit
def _k_principal_mask_from_factors(U, s, V, count):
    return _top_count_mask(jnp.abs((U * s) @ V.T), count)


def principal_mask_from_factors(U_k, s_k, V_k, alpha: float):
    """Principal mask (LIFT, docs/science.md section 4) from precomputed rank-k factors: score each entry by
    |(U_k diag(s_k) V_k^T)_ij| and keep the top ``alpha`` share (``mask_count(m * n, alpha)`` entries; ties go
    to the lower row-major index). With the top-k triplets of a full SVD this is ``principal_mask(W0, k, alpha)``
    up to round-off in the scores (only entries tied with the threshold can differ).
    """
    U, s, V = _check_factors(U_k, s_k, V_k)
    require_open_unit("alpha", alpha)
    return _k_principal_mask_from_factors(U, s, V, mask_count(U.shape[0] * V.shape[0], alpha))


@jax.jit
def _k_energy_from_factors(U, V, dW):
    P = U.T @ dW @ V
    return _safe_div(jnp.sum(P * P), jnp.sum(dW * dW))


def principal_energy_from_factors(U_k, V_k, dW):
    """Principal energy fraction |U_k U_k^T dW V_k V_k^T|_F^2 / |dW|_F^2 (docs/science.md section 4) with U_k (m, k) and
    V_k (n, k) the top-k singular vectors of W0 from any accurate (truncated) SVD; NaN for dW = 0. Equals
    ``principal_energy_fraction(W0, dW, k)`` for the vectors of a full SVD; random level k^2 / (m n)
    (``principal_energy_random_level``)."""
    U = _factor("U_k", U_k)
    V = _factor("V_k", V_k)
    d = _matrix("dW", dW)
    if U.shape[0] != d.shape[0] or V.shape[0] != d.shape[1] or U.shape[1] != V.shape[1]:
        raise ValueError(
            f"Arguments `U_k` {tuple(U.shape)}, `V_k` {tuple(V.shape)} and `dW` {tuple(d.shape)} need U_k (m, k), V_k (n, k), dW (m, n)."
        )
    dtype = jnp.promote_types(jnp.promote_types(U.dtype, V.dtype), d.dtype)
    return _k_energy_from_factors(U.astype(dtype), V.astype(dtype), d.astype(dtype))


def _spectrum(name: str, s):
    s = _float(s)
    require_ndim(name, s, 1)
    require_nonempty(name, s)
    require_finite(name, s)
    if is_concrete(s) and bool(np.any(np.asarray(s) < 0)):
        raise ValueError(f"Argument `{name}` must hold singular values (non-negative), got a negative entry.")
    return s


def _desc(s):
    return jnp.sort(s)[::-1]


@jax.jit
def _k_nss_from_sv(a, b):
    a, b = _desc(a), _desc(b)
    return _safe_div(jnp.linalg.norm(b - a), jnp.linalg.norm(a))


@jax.jit
def _k_stable_rank_from_sv(s):
    s2 = s * s
    return _safe_div(jnp.sum(s2), jnp.max(s2))


@jax.jit
def _k_gap_from_sv(s, k):
    return _gap(_desc(s), k)


def nss_from_singular_values(s0, s1):
    """NSS = |sigma(W1) - sigma(W0)|_2 / |sigma(W0)|_2 (docs/science.md section 4) from the two full spectra
    (any order: each is sorted decreasing first; both of length min(m, n)); NaN when sigma(W0) = 0.
    Equals ``normalized_spectral_shift(W0, W1)`` for the singular values of W0 and W1."""
    a = _spectrum("s0", s0)
    b = _spectrum("s1", s1)
    require_same_shape("s0", a, "s1", b)
    dtype = jnp.promote_types(a.dtype, b.dtype)
    return _k_nss_from_sv(a.astype(dtype), b.astype(dtype))


def stable_rank_from_singular_values(s):
    """Stable rank sum_i sigma_i^2 / sigma_1^2 = |W|_F^2 / |W|_2^2 from the full spectrum (as ``stable_rank``);
    NaN for W = 0."""
    return _k_stable_rank_from_sv(_spectrum("s", s))


def spectral_gap_from_singular_values(s, k: int):
    """gamma_k = sigma_k - sigma_{k+1} from the full spectrum, with sigma_{r+1} := 0 (as ``spectral_gap``)."""
    s = _spectrum("s", s)
    require_rank_index("k", k, s.shape[0])
    return _k_gap_from_sv(s, int(k))
