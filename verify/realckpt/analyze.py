"""Per-tensor metrics of checkpoint pairs, streamed one tensor name at a time (docs/science.md sections 2 to 4).

For each tensor name present in the base and in a tuned checkpoint with the same shape:
- every float tensor: bf16-aware update sparsity with the paper's relative probe (claim C2, eta = 1e-3,
  ``theory.precision.changed_mask_relative``), bitwise truth (``changed_mask_bitwise``) and the absolute
  1e-5 probe of Mukherjee et al. (``changed_mask_absolute``), with their disagreement counts. Tensors
  stored in another float dtype (F32, F16, F64) are rounded to bf16 (``theory.precision.to_bf16``, nearest
  even) before the bf16 probes and reported as rounded; the absolute probe reads the values as stored. A pair
  stored as F16 on both sides (an fp16 release) also gets its own fp16 sparsity, the stored fp16 values compared
  (``changed_mask_fp16``; the relative probe is not sound for fp16, whose neighbours differ by less than 1e-3).
- every matrix (2-D float tensor; this suite's (in, out) ``*.kernel`` tensors read as (out, in)):
  normalised spectral shift (C10), the largest principal angle of the top-k left and right singular
  subspaces with the gap gamma_k of W0 beside it, overlap of the changed set with the principal
  (LIFT) and low-magnitude masks of W0 at share alpha (C11), principal energy share of dW and its
  isotropic level k^2/(mn), stable rank of W0 and W1. Spectral metrics read the values as stored.
- across several tuned checkpoints of one base: pairwise Jaccard of the bf16 changed masks against
  the independent-Bernoulli baseline pq/(p+q-pq), and consensus maps (C3).

Streaming. One tensor name is in memory at a time: the base tensor and one tuned tensor as read-only
memory maps, their changed masks packed 8 per byte, and k-column factors. Everything else runs over
row chunks of at most ``Options.chunk`` elements, so memory above the process's baseline stays near
the bf16 size of the largest tensor pair plus chunk buffers (the bound checked by the benchmark is 4x
the largest tensor's float32 size).

Spectra and top-k subspaces (``top_k_factors``). Singular values and the top-k singular vectors of the
smaller side come from a dense symmetric eigensolver (LAPACK ``syevr``) on the float64 Gram matrix of
the smaller side, accumulated over chunks; the other side's vectors are W V_k (or W^T U_k)
orthonormalised by QR. bf16 (and float32) entries are exact in float64, so each eigenvalue lambda_i is
off by about eps64 * sigma_1^2: sigma_i is accurate to eps64 * sigma_1^2 / sigma_i (far below the
float32 full SVD's eps32 * sigma_1) except for sigma_i below about 1e-8 sigma_1, and the top-k
subspace to about eps64 sigma_1^2 / (sigma_k^2 - sigma_{k+1}^2) radians. This is what ARPACK's ``svds``
does implicitly (eigenvectors of the Gram operator), done directly; unlike a randomized SVD it does not
depend on a power-iteration count. ``tests/test_realckpt.py`` checks it against the full SVD.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import jax
import numpy as np
import scipy.linalg

from theory import precision as P
from theory import spectral as S
from verify.realckpt.layout import (
    BadInput,
    Checkpoint,
    is_kernel,
    order_key,
    parse_name,
)

BF16 = P.BF16
_MAX_GRID = 512  # consensus maps are block-averaged to at most this many cells per side


@dataclass(frozen=True)
class Options:
    """Analysis settings: rank k of the top subspaces, mask share alpha, probe thresholds, name filters, chunk size."""

    rank: int = 64
    alpha: float = 0.5
    eta: float = 1e-3
    tol: float = 1e-5
    include: str | None = None
    exclude: str | None = None
    chunk: int = 1 << 22

    def __post_init__(self):
        if int(self.rank) != self.rank or self.rank < 1:
            raise BadInput(f"Option --rank must be a positive integer, got {self.rank}.")
        if not 0.0 < self.alpha < 1.0:
            raise BadInput(f"Option --alpha must lie in the open interval (0, 1), got {self.alpha}.")
        for flag, rx in (("--include", self.include), ("--exclude", self.exclude)):
            if rx is not None:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise BadInput(f"Option {flag} is not a valid regular expression ({e}).") from None

    def selects(self, name: str) -> bool:
        """True when ``name`` passes --include and --exclude (``re.search``)."""
        if self.include is not None and not re.search(self.include, name):
            return False
        return not (self.exclude is not None and re.search(self.exclude, name))


# ----------------------------------------------------------------------------------------------
# chunks and checks


def _row_step(n_cols: int, chunk: int) -> int:
    """Rows per chunk: a multiple of 8 (so packed masks of row chunks start on a byte), about ``chunk`` elements."""
    return max(8, (chunk // max(n_cols, 1)) // 8 * 8)


def _rows(n_rows: int, n_cols: int, chunk: int):
    step = _row_step(n_cols, chunk)
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def _not_finite(x: np.ndarray) -> bool:
    if x.dtype == BF16:
        return bool(np.any((x.view(np.uint16) & 0x7F80) == 0x7F80))
    return not bool(np.all(np.isfinite(x)))


def _require_finite(x: np.ndarray, name: str, file) -> None:
    if _not_finite(x):
        raise BadInput(f"Tensor `{name}` in {file} holds NaN or infinite values.")


def _row_chunks64(W: np.ndarray, chunk: int):
    """Yield (r0, r1, float64 copy of W[r0:r1]) through one reused buffer (valid until the next chunk).

    Reusing the buffer matters: a fresh 32 MB array per chunk costs its page faults every time."""
    m, n = W.shape
    buf = np.empty((min(m, _row_step(n, chunk)), n))
    for r0, r1 in _rows(m, n, chunk):
        out = buf[: r1 - r0]
        np.copyto(out, W[r0:r1], casting="unsafe")
        yield r0, r1, out


def _pack_into(packed: np.ndarray, start: int, mask: np.ndarray) -> None:
    """Write a flat bool chunk starting at bit ``start`` (a multiple of 8) into a packed bit array."""
    b = np.packbits(mask.reshape(-1))
    packed[start // 8: start // 8 + b.size] = b


def _unpack(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    return np.unpackbits(packed[start // 8: (stop + 7) // 8], count=stop - start).astype(bool)


def popcount(packed: np.ndarray) -> int:
    """Number of set bits of a packed mask (``np.packbits`` layout, padding bits zero)."""
    return int(np.bitwise_count(packed).sum(dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# spectra and top-k factors


def gram(W: np.ndarray, chunk: int = 1 << 22) -> tuple[np.ndarray, str]:
    """float64 Gram matrix of the smaller side of W (m, n), accumulated over chunks.

    Returns (W^T W, "right") when m >= n, else (W W^T, "left"). Inputs of any float dtype (bf16 via
    ml_dtypes) are upcast per chunk; bf16 and float32 products are exact in float64.
    """
    m, n = W.shape
    if m >= n:
        G = np.zeros((n, n))
        for _, _, X in _row_chunks64(W, chunk):
            G += X.T @ X
        return G, "right"
    G = np.zeros((m, m))
    step = min(n, max(64, chunk // max(m, 1)))
    buf = np.empty((m, step))
    for c0 in range(0, n, step):
        X = buf[:, : min(step, n - c0)]
        np.copyto(X, W[:, c0:c0 + step], casting="unsafe")
        G += X @ X.T
    return G, "left"


def _orthonormal(B: np.ndarray) -> np.ndarray:
    """Q of the thin QR of B with the signs that make diag(R) >= 0 (Q = B / |B| columnwise for orthogonal B)."""
    with single_blas_thread():
        Q, R = np.linalg.qr(B)
    sign = np.sign(np.diag(R))
    sign[sign == 0] = 1.0
    return Q * sign


_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads",
                     "openblas_set_num_threads64_")
_blas = {"depth": 0, "setters": None, "lock": threading.Lock()}


def _openblas_setters() -> list:
    if _blas["setters"] is None:
        found = []
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
        except OSError:
            paths = set()
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            found += [getattr(lib, sym) for sym in _OPENBLAS_SETTERS if hasattr(lib, sym)]
        _blas["setters"] = found
    return _blas["setters"]


@contextmanager
def single_blas_thread():
    """Run the block with every loaded OpenBLAS on one thread (re-entrant; ``os.cpu_count()`` threads after).

    LAPACK's tridiagonal reduction makes thousands of small BLAS-2 calls; with two OpenBLAS threads on a
    machine whose cores are busy with other work, each call waits for a descheduled thread: a 1536 x 1536
    ``eigh`` was measured 7 to 20 times slower (4.5 to 14 s against 0.65 s), and a float64 Gram product
    no faster than on one thread. The analyzer instead runs independent tasks on two Python threads
    (``analyze``). No-op when no OpenBLAS is found."""
    with _blas["lock"]:
        if _blas["depth"] == 0:
            for f in _openblas_setters():
                f(ctypes.c_int(1))
        _blas["depth"] += 1
    try:
        yield
    finally:
        with _blas["lock"]:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                for f in _openblas_setters():
                    f(ctypes.c_int(os.cpu_count() or 1))


def _eigen(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues (decreasing) and the eigenvectors of the k largest (columns, same order) of symmetric G.

    One Householder tridiagonalisation (LAPACK ``dsytrd``) serves both: all eigenvalues of the tridiagonal
    T, the k top eigenvectors of T (MRRR), then back to G's basis with the stored reflectors (``dormqr``:
    what ``dormtr`` does). Small G use ``scipy.linalg.eigh``."""
    r = G.shape[0]
    with single_blas_thread():
        if r < 32:
            lam, Z = scipy.linalg.eigh(G, check_finite=False)
            return lam[::-1], np.ascontiguousarray(Z[:, ::-1][:, :k])
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


def top_k_factors(W: np.ndarray, k: int, chunk: int = 1 << 22, where: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All singular values and the top-k singular vectors of W (m, n) without a full SVD (module docstring).

    Returns (s (min(m, n),) decreasing, U_k (m, k), V_k (n, k)), float64, from the eigendecomposition of
    the float64 Gram matrix of the smaller side. ``k`` is capped at min(m, n). A NaN or infinite entry
    makes the Gram matrix non-finite and raises ``BadInput`` (naming ``where`` = (tensor, file)).
    """
    with single_blas_thread():
        return _top_k_factors(W, k, chunk, where)


def _top_k_factors(W, k, chunk, where):
    m, n = W.shape
    r = min(m, n)
    k = min(int(k), r)
    G, side = gram(W, chunk)
    if not np.all(np.isfinite(G)):
        name, file = where or ("W", "the input")
        raise BadInput(f"Tensor `{name}` in {file} holds NaN or infinite values.")
    lam, Z = _eigen(G, k)
    s = np.sqrt(np.clip(lam, 0.0, None))
    if side == "right":
        B = np.empty((m, k))
        for r0, r1, X in _row_chunks64(W, chunk):
            np.matmul(X, Z, out=B[r0:r1])
        return s, _orthonormal(B), Z
    B = np.zeros((n, k))
    for r0, r1, X in _row_chunks64(W, chunk):
        B += X.T @ Z[r0:r1]
    return s, Z, _orthonormal(B)


# ----------------------------------------------------------------------------------------------
# exact top-count selection over chunks (the masks of docs/science.md section 4 without sorting)


def _select_packed(keys, n_rows: int, n_cols: int, count: int, transposed: bool, chunk: int) -> np.ndarray:
    """Packed mask of the ``count`` largest uint32 keys of an (n_rows, n_cols) matrix given by row chunks.

    ``keys(r0, r1)`` returns the keys of rows r0:r1 (shape (r1 - r0, n_cols)). Ties at the threshold go to
    the lower row-major index of the analysed matrix: the stored one, or its transpose when
    ``transposed`` (as ``theory.spectral`` masks do on (out, in) matrices). Two passes: the keys are
    gathered once (4 bytes per entry) and the threshold found by ``numpy.partition`` in place; then the
    keys are computed again, chunk by chunk, to write the mask.
    """
    N = n_rows * n_cols
    packed = np.zeros((N + 7) // 8, np.uint8)
    if count <= 0:
        return packed
    if count >= N:
        _pack_into(packed, 0, np.ones(N, bool))
        return packed
    every = np.empty(N, np.uint32)
    for r0, r1 in _rows(n_rows, n_cols, chunk):
        every[r0 * n_cols: r1 * n_cols] = keys(r0, r1).reshape(-1)
    every.partition(N - count)
    threshold = every[N - count]
    del every
    above, ties = 0, []
    for r0, r1 in _rows(n_rows, n_cols, chunk):
        kk = keys(r0, r1).reshape(-1)
        big = kk > threshold
        above += int(np.count_nonzero(big))
        _pack_into(packed, r0 * n_cols, big)
        ties.append(np.flatnonzero(kk == threshold) + r0 * n_cols)
    tie = np.concatenate(ties)
    if transposed:  # order ties by their row-major index in the transposed (analysed) matrix
        tie = tie[np.argsort((tie % n_cols) * n_rows + tie // n_cols, kind="stable")]
    chosen = tie[: count - above]
    np.bitwise_or.at(packed, chosen >> 3, (0x80 >> (chosen & 7)).astype(np.uint8))
    return packed


def principal_mask_packed(U: np.ndarray, s: np.ndarray, V: np.ndarray, alpha: float, transposed: bool = False,
                          chunk: int = 1 << 22) -> np.ndarray:
    """Packed principal mask (LIFT, docs/science.md section 4): the top ``alpha`` share of |U diag(s) V^T| (float32
    scores, as ``theory.spectral.principal_mask_from_factors``), ``mask_count(m n, alpha)`` entries, ties to
    the lower row-major index of the analysed orientation. U (m, k), V (n, k) in the stored orientation."""
    m, n = U.shape[0], V.shape[0]
    Us = (U * s).astype(np.float32)
    Vt = np.ascontiguousarray(V.T.astype(np.float32))
    buf = np.empty((_row_step(n, chunk), n), np.float32)  # reused: a fresh 16 MB array per chunk costs page faults

    def keys(r0, r1):
        out = buf[: r1 - r0]
        np.matmul(Us[r0:r1], Vt, out=out)
        return np.abs(out, out=out).view(np.uint32)  # non-negative floats order as their bits

    with single_blas_thread():
        return _select_packed(keys, m, n, S.mask_count(m * n, alpha), transposed, chunk)


def low_magnitude_mask_packed(W: np.ndarray, alpha: float, transposed: bool = False, chunk: int = 1 << 22) -> np.ndarray:
    """Packed low-magnitude mask (docs/science.md section 4): the bottom ``alpha`` share of |W| (as stored, in
    float32), ``mask_count(m n, alpha)`` entries, ties to the lower row-major index of the analysed
    orientation (as ``theory.spectral.low_magnitude_mask``)."""
    m, n = W.shape
    keys = lambda r0, r1: ~np.abs(np.asarray(W[r0:r1], dtype=np.float32)).view(np.uint32)
    return _select_packed(keys, m, n, S.mask_count(m * n, alpha), transposed, chunk)


# ----------------------------------------------------------------------------------------------
# one tensor


@dataclass
class BaseSide:
    """What a base tensor contributes to every pair: spectrum, top-k factors and masks (stored orientation)."""

    name: str
    layer: int | None
    kind: str
    transposed: bool
    matrix: bool
    k: int = 0
    s: np.ndarray | None = None
    U: np.ndarray | None = None
    V: np.ndarray | None = None
    principal: np.ndarray | None = None
    low: np.ndarray | None = None


def base_side(ckpt: Checkpoint, name: str, opts: Options) -> BaseSide:
    """Spectrum, top-k factors and the principal / low-magnitude masks of one base tensor (matrices only)."""
    layer, kind = parse_name(name)
    info = ckpt.tensors[name]
    matrix = len(info.shape) == 2 and min(info.shape) >= 1
    b = BaseSide(name, layer, kind, is_kernel(name) and matrix, matrix)
    if not matrix:
        return b
    W0 = ckpt.array(name)
    b.k = min(int(opts.rank), min(W0.shape))
    b.s, b.U, b.V = top_k_factors(W0, b.k, opts.chunk, where=(name, info.file))
    b.principal = principal_mask_packed(b.U, b.s[:b.k], b.V, opts.alpha, b.transposed, opts.chunk)
    b.low = low_magnitude_mask_packed(W0, opts.alpha, b.transposed, opts.chunk)
    return b


def _probe(fn, name: str, files, *args, **kw):
    try:
        return fn(*args, **kw)
    except ValueError as e:  # theory's checks name the argument (w0: base, w1: tuned); say which tensor and files
        raise BadInput(f"Tensor `{name}` (base {files[0]}, tuned {files[1]}): {str(e).rstrip('.')} after rounding to bf16.") from None


def _sparsity(a0, a1, name: str, files, opts: Options) -> tuple[dict, np.ndarray]:
    """Counts of the three probes and their disagreements, and the packed relative-probe changed mask."""
    f0, f1 = a0.reshape(-1), a1.reshape(-1)
    N = f0.size
    packed = np.zeros((N + 7) // 8, np.uint8)
    c = dict(changed_bf16=0, changed_bitwise=0, changed_abs=0, abs_only=0, rel_only=0, rel_vs_bitwise=0, changed_fp16=0)
    fp16 = f0.dtype == np.float16 and f1.dtype == np.float16
    step = max(8, opts.chunk // 8 * 8)
    for s0 in range(0, N, step):
        x0, x1 = f0[s0:s0 + step], f1[s0:s0 + step]
        _require_finite(x0, name, files[0])
        _require_finite(x1, name, files[1])
        b0 = x0 if x0.dtype == BF16 else _probe(P.to_bf16, name, files, x0)
        b1 = x1 if x1.dtype == BF16 else _probe(P.to_bf16, name, files, x1)
        rel = _probe(P.changed_mask_relative, name, files, b0, b1, eta=opts.eta)
        bit = _probe(P.changed_mask_bitwise, name, files, b0, b1)
        ab = _probe(P.changed_mask_absolute, name, files, x0, x1, tol=opts.tol)
        c["changed_bf16"] += int(np.count_nonzero(rel))
        c["changed_bitwise"] += int(np.count_nonzero(bit))
        c["changed_abs"] += int(np.count_nonzero(ab))
        c["abs_only"] += int(np.count_nonzero(ab & ~rel))
        c["rel_only"] += int(np.count_nonzero(rel & ~ab))
        c["rel_vs_bitwise"] += int(np.count_nonzero(rel != bit))
        if fp16:
            c["changed_fp16"] += int(np.count_nonzero(_probe(P.changed_mask_fp16, name, files, x0, x1)))
        _pack_into(packed, s0, rel)
    return c, packed


def _energy_and_norm(W0, W1, U, V, chunk: int) -> tuple[float, float]:
    """(|U^T dW V|_F^2, |dW|_F^2) over row chunks, float64 (U, V top-k of W0, stored orientation)."""
    m, n = W0.shape
    Pk = np.zeros((U.shape[1], n))
    d2 = 0.0
    d = np.empty((min(m, _row_step(n, chunk)), n))
    for (r0, r1, x1), (_, _, x0) in zip(_row_chunks64(W1, chunk), _row_chunks64(W0, chunk)):
        dd = np.subtract(x1, x0, out=d[: r1 - r0])
        Pk += U[r0:r1].T @ dd
        flat = dd.reshape(-1)
        d2 += float(flat @ flat)
    proj = Pk @ V
    return float(np.sum(proj * proj)), d2


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def tuned_factors(tuned: Checkpoint, name: str, opts: Options) -> tuple | None:
    """(s, U_k, V_k) of a tuned matrix (``top_k_factors``, stored orientation); None for other tensors."""
    info = tuned.tensors[name]
    if len(info.shape) != 2:
        return None
    W1 = tuned.array(name)
    return top_k_factors(W1, min(int(opts.rank), min(W1.shape)), opts.chunk, where=(name, info.file))


def sparsity_counts(base: Checkpoint, tuned: Checkpoint, name: str, opts: Options) -> tuple[dict, np.ndarray]:
    """Counts of the three change probes and their disagreements for one tensor pair, and the packed
    relative-probe (bf16) changed mask (flat, stored order)."""
    return _sparsity(base.array(name), tuned.array(name), name, (base.tensors[name].file, tuned.tensors[name].file), opts)


def pair_tensor(b: BaseSide, base: Checkpoint, tuned: Checkpoint, opts: Options,
                sparsity: tuple | None = None, factors: tuple | None = None) -> tuple[dict, np.ndarray]:
    """Metrics of one tensor pair (record for pair.json / pair.csv) and its packed bf16 changed mask.

    ``sparsity`` (from ``sparsity_counts``) and ``factors`` (from ``tuned_factors``) may be computed
    beforehand, on other threads; they are computed here when not given."""
    i0, i1 = base.tensors[b.name], tuned.tensors[b.name]
    counts, packed = sparsity if sparsity is not None else sparsity_counts(base, tuned, b.name, opts)
    N = i0.size
    rounded = [side for side, i in (("base", i0), ("tuned", i1)) if i.dtype != "BF16"]
    rec = dict(name=b.name, shape=list(i0.shape), layer=b.layer, kind=b.kind,
               dtype=i0.dtype if i0.dtype == i1.dtype else f"{i0.dtype}/{i1.dtype}",
               rounded_to_bf16="+".join(rounded), transposed=b.transposed, size=N, **counts,
               sparsity_bf16=1 - counts["changed_bf16"] / N, sparsity_bitwise=1 - counts["changed_bitwise"] / N,
               sparsity_abs=1 - counts["changed_abs"] / N,
               sparsity_fp16=1 - counts["changed_fp16"] / N if i0.dtype == i1.dtype == "F16" else None)
    rec.update(dict.fromkeys(MATRIX_KEYS))
    if b.matrix:
        s1, U1, V1 = factors if factors is not None else tuned_factors(tuned, b.name, opts)
        e_num, d2 = _energy_and_norm(base.array(b.name), tuned.array(b.name), b.U, b.V, opts.chunk)
        w2 = float(np.sum(np.square(b.s)))  # |W0|_F^2 = sum of sigma_i^2 = trace of the Gram matrix
        with jax.enable_x64(True):
            ang_l = np.degrees(np.asarray(S.principal_angles_from_factors(b.U, U1)))
            ang_r = np.degrees(np.asarray(S.principal_angles_from_factors(b.V, V1)))
            nss = float(S.nss_from_singular_values(b.s, s1))
            gap = float(S.spectral_gap_from_singular_values(b.s, b.k))
            sr0 = float(S.stable_rank_from_singular_values(b.s))
            sr1 = float(S.stable_rank_from_singular_values(s1))
        ang_u, ang_v = (ang_r, ang_l) if b.transposed else (ang_l, ang_r)  # U = output (row) side of (out, in)
        m, n = (i0.shape[1], i0.shape[0]) if b.transposed else tuple(i0.shape)
        changed = counts["changed_bf16"]
        rec.update(
            k=b.k, nss=_f(nss),
            max_angle_u_deg=_f(ang_u.max()), max_angle_v_deg=_f(ang_v.max()),
            max_angle_deg=_f(max(ang_u.max(), ang_v.max())),
            gap_at_k=_f(gap), gap_at_k_rel=_f(gap / b.s[0]) if b.s[0] > 0 else None,
            principal_overlap=popcount(packed & b.principal) / changed if changed else None,
            low_mag_overlap=popcount(packed & b.low) / changed if changed else None,
            alpha=opts.alpha,
            principal_energy=e_num / d2 if d2 > 0 else None,
            energy_isotropic=S.principal_energy_random_level(m, n, b.k),
            stable_rank_base=_f(sr0), stable_rank_tuned=_f(sr1),
            rel_update=math.sqrt(d2 / w2) if w2 > 0 else None,
        )
    return rec, packed


MATRIX_KEYS = ("k", "nss", "max_angle_deg", "max_angle_u_deg", "max_angle_v_deg", "gap_at_k", "gap_at_k_rel",
               "principal_overlap", "low_mag_overlap", "alpha", "principal_energy", "energy_isotropic",
               "stable_rank_base", "stable_rank_tuned", "rel_update")
"""Record keys that only matrices fill (None for other tensors)."""


# ----------------------------------------------------------------------------------------------
# matching names


@dataclass
class Matching:
    """Tensor names of a (base, tuned) pair: compared, missing from tuned, extra in tuned, shape-mismatched, skipped."""

    common: list[str]
    missing: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    mismatched: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def _head_note(absent: Checkpoint) -> str:
    embed = [n for n in absent.tensors if parse_name(n)[1] == "embed"]
    if absent.tied_embeddings:
        return f"head tied to the embedding ({'`' + embed[0] + '`' if embed else 'embedding'}; config.json tie_word_embeddings = true)"
    return f"head absent: tied to the embedding ({'`' + embed[0] + '`' if embed else 'none found'}) or not saved"


def match(base: Checkpoint, tuned: Checkpoint, opts: Options) -> Matching:
    """Match tensors by name after --include / --exclude: missing, extra and shape-mismatched ones are listed,
    non-float ones skipped. A head (``lm_head``-like) present on one side only is reported as tied / absent."""
    b = {n for n in base.tensors if opts.selects(n)}
    t = {n for n in tuned.tensors if opts.selects(n)}
    out = Matching([])
    for n in sorted(b - t, key=order_key):
        note = _head_note(tuned) if parse_name(n)[1] == "head" else "not in the tuned checkpoint"
        out.missing.append({"name": n, "missing_from": "tuned", "note": note})
    for n in sorted(t - b, key=order_key):
        note = _head_note(base) if parse_name(n)[1] == "head" else "not in the base checkpoint"
        out.extra.append({"name": n, "missing_from": "base", "note": note})
    for n in sorted(b & t, key=order_key):
        i0, i1 = base.tensors[n], tuned.tensors[n]
        if i0.shape != i1.shape:
            out.mismatched.append({"name": n, "base_shape": list(i0.shape), "tuned_shape": list(i1.shape)})
        elif not (i0.is_float and i1.is_float):
            out.skipped.append({"name": n, "reason": f"dtype {i0.dtype}/{i1.dtype} is not a float weight"})
        elif i0.size == 0:
            out.skipped.append({"name": n, "reason": "empty tensor"})
        else:
            out.common.append(n)
    return out


# ----------------------------------------------------------------------------------------------
# whole checkpoints


@dataclass
class PairResult:
    """One (base, tuned) pair: matching, per-tensor records and totals (pair.json)."""

    base: str
    tuned: str
    options: Options
    matching: Matching
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """The pair.json object: top-level totals, lists and the per-tensor records."""
        params = sum(r["size"] for r in self.records)
        tot = lambda key: sum(r[key] for r in self.records)
        fp16_params = sum(r["size"] for r in self.records if r["sparsity_fp16"] is not None)
        rounded: dict[str, list[str]] = {"base": [], "tuned": []}
        for r in self.records:
            for side in filter(None, r["rounded_to_bf16"].split("+")):
                rounded[side].append(r["name"])
        return {
            "base": self.base, "tuned": self.tuned, "params": params,
            "sparsity_bf16": 1 - tot("changed_bf16") / params if params else None,
            "sparsity_bitwise": 1 - tot("changed_bitwise") / params if params else None,
            "sparsity_abs": 1 - tot("changed_abs") / params if params else None,
            "sparsity_fp16": 1 - tot("changed_fp16") / fp16_params if fp16_params else None,  # F16 pairs only
            "fp16_params": fp16_params,
            "abs_only": tot("abs_only"), "rel_only": tot("rel_only"), "rel_vs_bitwise": tot("rel_vs_bitwise"),
            "rounded_from_f32": rounded,
            "missing": self.matching.missing, "extra": self.matching.extra,
            "mismatched": self.matching.mismatched, "skipped": self.matching.skipped,
            "options": asdict(self.options), "seconds": round(self.seconds, 1),
            "tensors": self.records,
        }


@dataclass
class Result:
    """Everything one ``pair`` / ``pairs`` call computed: the pairs, and across runs (C3) the Jaccard records
    and block-averaged consensus maps."""

    base: str
    pairs: list[PairResult]
    c3: list[dict] = field(default_factory=list)
    consensus: dict = field(default_factory=dict)


def _consensus_grid(masks: list[np.ndarray], shape: tuple[int, int], transposed: bool, chunk: int) -> tuple[np.ndarray, tuple]:
    """Share of runs that changed each coordinate, block-averaged to at most _MAX_GRID cells per side,
    in the analysed (out, in) orientation; returns (grid, (rows per cell, cols per cell))."""
    m, n = shape
    gr, gc = min(m, _MAX_GRID), min(n, _MAX_GRID)
    row_edges = np.linspace(0, m, gr + 1).astype(int)
    col_edges = np.linspace(0, n, gc + 1).astype(int)
    row_bin = np.searchsorted(row_edges, np.arange(m), side="right") - 1
    grid = np.zeros((gr, gc))
    for r0, r1 in _rows(m, n, chunk):
        tot = sum(_unpack(p, r0 * n, r1 * n).reshape(r1 - r0, n).astype(np.float32) for p in masks)
        np.add.at(grid, row_bin[r0:r1], np.add.reduceat(tot, col_edges[:-1], axis=1))
    cells = np.outer(np.diff(row_edges), np.diff(col_edges)) * len(masks)
    grid = grid / cells
    block = (m / gr, n / gc)
    return (grid.T, block[::-1]) if transposed else (grid, block)


def _c3_record(name: str, b: BaseSide, runs: list[int], masks: list[np.ndarray], shape) -> dict:
    """Pairwise Jaccard of changed masks against the independent-Bernoulli baseline (claim C3)."""
    N = math.prod(shape)
    shape2 = (shape[0], int(np.prod(shape[1:]))) if len(shape) >= 2 else (1, N)
    dens = [popcount(p) / N for p in masks]
    R = len(masks)
    J = np.full((R, R), np.nan)
    base_ = np.full((R, R), np.nan)
    with jax.enable_x64(True):
        for i in range(R):
            A = _unpack(masks[i], 0, N).reshape(shape2)
            for j in range(i + 1, R):
                B = _unpack(masks[j], 0, N).reshape(shape2)
                J[i, j] = J[j, i] = float(S.jaccard(A, B))
                base_[i, j] = base_[j, i] = float(S.jaccard_random_baseline(dens[i], dens[j]))
            del A
    off = ~np.eye(R, dtype=bool)
    mean = lambda a: float(np.mean(a[np.isfinite(a)])) if np.any(np.isfinite(a)) else np.nan
    mj, mb = mean(J[off]), mean(base_[off])
    clean = lambda a: [[_f(x) for x in row] for row in a]
    return dict(name=name, layer=b.layer, kind=b.kind, size=N, runs=runs, densities=dens,
                jaccard=clean(J), baseline=clean(base_), mean_jaccard=_f(mj), mean_baseline=_f(mb),
                excess=_f(mj - mb), ratio=_f(mj / mb) if mb and np.isfinite(mb) and mb > 0 else None)


def analyze(base_path, tuned_paths: list, opts: Options, consensus: str | None = None) -> Result:
    """Analyse every tuned checkpoint against one base, one tensor name at a time.

    For each name (embeddings, layers in order, then the rest): the base side once (spectrum, factors,
    masks), then each tuned checkpoint that holds the name with the same shape (``pair_tensor``), then,
    with two or more runs, the C3 record and, for names matching ``consensus``, a consensus map.
    Raises ``BadInput`` (one sentence naming the file / tensor) on unreadable input or when nothing matches.
    """
    try:  # the progress display moved from toy_models.runs to toy_models.progress; same interface
        from toy_models.progress import Progress
    except ImportError:
        from toy_models.runs import Progress

    t_start = time.perf_counter()
    base = Checkpoint(base_path, "base checkpoint")
    tuned = [Checkpoint(p, f"tuned checkpoint {i + 1}" if len(tuned_paths) > 1 else "tuned checkpoint")
             for i, p in enumerate(tuned_paths)]
    matchings = [match(base, t, opts) for t in tuned]
    for t, mt in zip(tuned, matchings):
        if not mt.common:
            raise BadInput(f"No tensor of the base checkpoint {base.path} matches a tensor of {t.path} by name, shape and float dtype"
                           + (" after --include/--exclude." if opts.include or opts.exclude else "."))
    pairs = [PairResult(str(base.path), str(t.path), opts, mt) for t, mt in zip(tuned, matchings)]
    common = [set(mt.common) for mt in matchings]
    names = sorted(set().union(*common), key=order_key)
    res = Result(str(base.path), pairs)
    try:
        rx = re.compile(consensus) if consensus else None
    except re.error as e:
        raise BadInput(f"Option --consensus is not a valid regular expression ({e}).") from None
    bar = Progress("pairs" if len(tuned) > 1 else "pair", len(names))
    # Two worker threads (each BLAS call on one thread): the base side and the tuned spectrum run there while
    # this thread runs the change probes; one tensor name (base + one tuned tensor at a time) is in memory.
    try:
        with single_blas_thread(), ThreadPoolExecutor(max_workers=2) as pool:
            for i, name in enumerate(names):
                t0 = time.perf_counter()
                fb = pool.submit(base_side, base, name, opts)
                runs, masks = [], []
                for j, t in enumerate(tuned):
                    if name not in common[j]:
                        continue
                    ff = pool.submit(tuned_factors, t, name, opts)
                    try:
                        sp = sparsity_counts(base, t, name, opts)
                        b = fb.result()
                        rec, packed = pair_tensor(b, base, t, opts, sparsity=sp, factors=ff.result())
                    except BaseException:
                        ff.cancel()
                        fb.cancel()
                        raise
                    rec["seconds"] = round(time.perf_counter() - t0, 3)
                    pairs[j].records.append(rec)
                    runs.append(j)
                    masks.append(packed)
                b = fb.result()
                if len(tuned) > 1 and len(masks) >= 2:
                    shape = base.tensors[name].shape
                    res.c3.append(_c3_record(name, b, runs, masks, shape))
                    if rx is not None and rx.search(name) and len(shape) == 2:
                        grid, block = _consensus_grid(masks, shape, b.transposed, opts.chunk)
                        res.consensus[name] = {"grid": grid, "block": block, "runs": len(masks),
                                               "shape": (shape[1], shape[0]) if b.transposed else tuple(shape)}
                del b, masks
                bar.update(i + 1, tensor=name)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t_start
    for p in pairs:
        p.seconds = elapsed
    return res
