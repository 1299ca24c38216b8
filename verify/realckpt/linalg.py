"""Spectra of matrices read in chunks: float64 Gram matrices, a dense eigensolver, orthonormal factors.

Spectra (``add_gram``, ``eigen``). A matrix W (m, n) is analysed in its "tall" orientation T = W (m >= n) or
T = W^T, so that the Gram matrix T^T T is r x r with r = min(m, n). Gram matrices are accumulated in float64
over chunks; bf16 and float32 products are exact in float64, so each eigenvalue lambda_i is off by about
eps64 sigma_1^2: sigma_i is accurate to eps64 sigma_1^2 / sigma_i (far below a float32 full SVD's eps32
sigma_1) except below about 1e-8 sigma_1, and the top-k subspace to eps64 sigma_1^2 / (sigma_k^2 -
sigma_k+1^2) radians. This is the exact method ARPACK's ``svds`` uses implicitly (eigenvectors of the Gram
operator), done densely: no randomisation, no iteration count. The other side's vectors are T V_k,
orthonormalised (``orthonormal``). ``top_k_factors`` packages the route; tests check it against the full SVD.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.linalg.blas as blas

from verify.realckpt.stream import single_blas_thread, tall_blocks


def add_gram(G: np.ndarray, X: np.ndarray) -> None:
    """G += X^T X, lower triangle only (``dsyrk`` on the row-major chunk, no copy); X float64 (rows, r)."""
    blas.dsyrk(1.0, X.T, beta=1.0, c=G.T, trans=0, lower=0, overwrite_c=1)


def symmetric(G: np.ndarray) -> np.ndarray:
    """The full symmetric matrix of a lower-triangle-filled one (``add_gram``)."""
    return np.tril(G) + np.tril(G, -1).T


def eigen(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues (decreasing) and the eigenvectors of the k largest (columns, same order) of symmetric G.

    One Householder tridiagonalisation (LAPACK ``dsytrd``) serves both: all eigenvalues of the tridiagonal
    T, the k top eigenvectors of T (MRRR), then back to G's basis with the stored reflectors (``dormqr``:
    what ``dormtr`` does). k = 0 gives eigenvalues only; small G use ``scipy.linalg.eigh``."""
    r = G.shape[0]
    k = min(int(k), r)
    with single_blas_thread():
        if r < 32:
            lam, Z = scipy.linalg.eigh(G, check_finite=False)
            return lam[::-1], np.ascontiguousarray(Z[:, ::-1][:, :k])
        if k == 0:
            return scipy.linalg.eigvalsh(G, check_finite=False, driver="evd")[::-1], np.zeros((r, 0))
        lapack = scipy.linalg.lapack
        lwork = int(lapack.dsytrd_lwork(r, lower=1)[0])
        c, d, e, tau, info = lapack.dsytrd(G, lower=1, lwork=lwork)
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd failed (info {info}).")
        lam = scipy.linalg.eigvalsh_tridiagonal(d, e, check_finite=False)
        if k == r:
            _, Zt = scipy.linalg.eigh_tridiagonal(d, e, check_finite=False)
        else:
            _, Zt = scipy.linalg.eigh_tridiagonal(d, e, select="i", select_range=(r - k, r - 1), check_finite=False)
        Zt = np.asfortranarray(Zt[:, ::-1])
        a = np.asfortranarray(c[1:, :-1])
        work = int(lapack.dormqr("L", "N", a, tau, Zt[1:], lwork=-1)[1][0])
        qz, _, info = lapack.dormqr("L", "N", a, tau, Zt[1:], lwork=max(work, 1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dormqr failed (info {info}).")
        Z = np.empty((r, k))
        Z[0] = Zt[0]
        Z[1:] = qz
    return lam[::-1], Z


def singular_values(lam: np.ndarray) -> np.ndarray:
    """Singular values from Gram eigenvalues (decreasing; rounding-negative eigenvalues clipped to 0)."""
    return np.sqrt(np.clip(lam, 0.0, None))


def orthonormal(B: np.ndarray) -> np.ndarray:
    """Q of the thin QR of B (m, k), diag(R) > 0: columns scaled to unit norm, then CholeskyQR twice; B (C order)
    is overwritten, so the largest factor needs no second copy.

    B = T V_k has orthogonal columns in exact arithmetic (norms sigma_i), so after scaling its condition number
    is about 1 and CholeskyQR2 (Q = B R^-1 with R^T R = B^T B, repeated) is as accurate as Householder QR at a
    fraction of its cost on tall matrices (BLAS-3 only). A rank-deficient B (a zero column, say) falls back to
    Householder QR of the scaled matrix, which has the same Q."""
    with single_blas_thread():
        norms = np.linalg.norm(B, axis=0)
        B /= np.where(norms > 0, norms, 1.0)
        Q = B
        try:
            for _ in range(2):
                R = scipy.linalg.cholesky(Q.T @ Q, lower=False, check_finite=False)
                Q = scipy.linalg.solve_triangular(R, Q.T, trans="T", lower=False, overwrite_b=True, check_finite=False).T
        except np.linalg.LinAlgError:
            Q, R = np.linalg.qr(Q)
            sign = np.sign(np.diag(R))
            sign[sign == 0] = 1.0
            return Q * sign
    return Q if Q.flags.c_contiguous else np.ascontiguousarray(Q)


def top_k_factors(W: np.ndarray, k: int, chunk: int = 1 << 22) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All singular values and the top-k singular vectors of an in-memory W (m, n) without a full SVD (module docstring).

    Returns (s (min(m, n),) decreasing, U_k (m, k), V_k (n, k)), float64. ``k`` is capped at min(m, n)."""
    m, n = W.shape
    r = min(m, n)
    G = np.zeros((r, r))
    with single_blas_thread():
        for _, _, X in tall_blocks(W, chunk):
            add_gram(G, X)
        lam, Z = eigen(symmetric(G), k)
        B = np.concatenate([X @ Z for _, _, X in tall_blocks(W, chunk)])
    other = orthonormal(B)
    return (singular_values(lam), other, Z) if m >= n else (singular_values(lam), Z, other)
