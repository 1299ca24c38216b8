"""Reading tensors in row chunks, their bf16 bit patterns, packed masks, and the BLAS thread count.

``Source`` reads one stored tensor in row chunks with ``readinto`` into one reused buffer (no memory map, so
nothing read stays resident), or holds it whole when its Gram matrix needs column blocks (a wide matrix) or it
is small. A matrix W (m, n) is analysed in its "tall" orientation T = W (m >= n) or T = W^T (``tall_blocks``);
the linear algebra on it is in ``linalg``, the masks in ``select``. Memory per tensor stays at a few chunk
buffers plus k-column factors and packed (1 bit per weight) masks.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import ml_dtypes
import numpy as np
import threadpoolctl

from verify.realckpt.layout import DTYPES, BadInput, TensorInfo, read_elements

BF16 = ml_dtypes.bfloat16
WHOLE_BYTES = 64 * 2**20
"""Tensors up to this size (stored) are read whole; larger tall ones are streamed in row chunks."""


# ----------------------------------------------------------------------------------------------
# chunks, reading, bits


def row_step(n_cols: int, chunk: int) -> int:
    """Rows per chunk: a multiple of 8 (so packed masks of row chunks start on a byte), about ``chunk`` elements."""
    return max(8, (chunk // max(n_cols, 1)) // 8 * 8)


def row_ranges(n_rows: int, n_cols: int, chunk: int):
    """(r0, r1) row ranges of about ``chunk`` elements (``row_step``)."""
    step = row_step(n_cols, chunk)
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def as_rows(shape: tuple) -> tuple[int, int]:
    """(rows, columns) of a tensor read as a matrix: 2-D as is, 1-D as one row, higher ranks flattened after axis 0."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], int(np.prod(shape[1:]))


class Source:
    """One stored tensor read in row chunks of its (rows, columns) view (``as_rows``); held whole if small or ``whole``."""

    def __init__(self, info: TensorInfo, chunk: int, whole: bool = False):
        self.info = info
        self.shape = as_rows(info.shape)
        self.dtype = DTYPES[info.dtype]
        self.step = row_step(self.shape[1], chunk)
        self.data = None
        if whole or info.nbytes <= WHOLE_BYTES:
            self.data = read_elements(info, 0, info.size).reshape(self.shape)
        self._buf = None

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows r0:r1 in the stored dtype (a view of a reused buffer, valid until the next call, when streamed)."""
        if self.data is not None:
            return self.data[r0:r1]
        n = self.shape[1]
        if self._buf is None:
            self._buf = np.empty(self.step * n, self.dtype)
        return read_elements(self.info, r0 * n, (r1 - r0) * n, self._buf).reshape(r1 - r0, n)

    def ranges(self):
        """(r0, r1) row ranges of one pass."""
        for r0 in range(0, self.shape[0], self.step):
            yield r0, min(self.shape[0], r0 + self.step)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """``theory.precision.to_bf16`` without importing JAX on the fast path: float32 and narrower inputs are cast by
    ml_dtypes (what that function does for them); float64 goes to it (one correct rounding)."""
    if x.dtype == np.float64:
        from theory.precision import to_bf16

        return to_bf16(x)
    return np.asarray(x, np.float32).astype(BF16)


def to_fp16(x: np.ndarray) -> np.ndarray:
    """``theory.precision.to_fp16`` on the fast path: float32 and narrower inputs through float32 (what that
    function does for them; bf16 and fp16 convert exactly); float64 goes to it."""
    if x.dtype == np.float64:
        from theory.precision import to_fp16

        return to_fp16(x)
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float32).astype(np.float16)


def bf16_bits(x: np.ndarray, name: str, file) -> np.ndarray:
    """uint16 bits of the stored values rounded to bf16 (a view for bf16); BadInput if a value is or becomes non-finite."""
    if x.dtype == BF16:
        b = x.view(np.uint16)
        if not_finite_bits(b):
            raise BadInput(f"Tensor `{name}` in {file} holds NaN or infinite values.")
        return b
    if not np.all(np.isfinite(x)):
        raise BadInput(f"Tensor `{name}` in {file} holds NaN or infinite values.")
    b = to_bf16(x).view(np.uint16)
    if not_finite_bits(b):
        raise BadInput(f"Tensor `{name}` in {file} holds values that overflow bf16 (magnitude >= 2^128 - 2^119) after rounding to bf16.")
    return b


def not_finite_bits(b: np.ndarray) -> bool:
    """True when some bf16 bit pattern has all exponent bits set (NaN or inf), by two reductions: as int16 the
    positive ones are >= 0x7F80, as uint16 the negative ones are >= 0xFF80 (no other pattern reaches either)."""
    return bool(b.size) and (int(b.view(np.int16).max()) >= 0x7F80 or int(b.max()) >= 0xFF80)


def has_zero_bits(b: np.ndarray) -> bool:
    """True when some bf16 bit pattern is +0 (0x0000, the smallest uint16) or -0 (0x8000, the smallest int16)."""
    return bool(b.size) and (int(b.min()) == 0 or int(b.view(np.int16).min()) == -32768)


def bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bf16 bit patterns (exact: the bf16 bits are the high half of the float32 bits)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def changed_bits(b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """bf16 changed mask from bit patterns: bits differ, +0 against -0 excepted (``theory.precision.changed_mask_bitwise``).
    The signed-zero correction runs only when both sides hold a zero."""
    changed = b0 != b1
    if has_zero_bits(b0) and has_zero_bits(b1):
        changed &= ((b0 | b1) & 0x7FFF) != 0  # both zero, of either sign: unchanged
    return changed


def pack_into(packed: np.ndarray, start: int, mask: np.ndarray) -> None:
    """Write a flat bool chunk starting at bit ``start`` (a multiple of 8) into a packed bit array."""
    b = np.packbits(mask.reshape(-1))
    packed[start // 8: start // 8 + b.size] = b


def unpack(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Bits [start, stop) of a packed mask as bool (start a multiple of 8)."""
    return np.unpackbits(packed[start // 8: (stop + 7) // 8], count=stop - start).astype(bool)


def popcount(packed: np.ndarray) -> int:
    """Number of set bits of a packed mask (``np.packbits`` layout, padding bits zero)."""
    return int(np.bitwise_count(packed).sum(dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# BLAS threads


_blas = {"depth": 0, "limiter": None, "lock": threading.Lock()}


@contextmanager
def single_blas_thread():
    """Run the block with every loaded BLAS on one thread, restoring the previous counts after (re-entrant,
    also across threads of one process: the outermost block sets and restores).

    LAPACK's tridiagonal reduction makes thousands of small BLAS-2 calls; with two BLAS threads on a machine
    whose cores are busy with other work, each call waits for a descheduled thread (a 1536 x 1536 ``eigh``
    was measured 7 to 20 times slower). The analyzer runs tensors in parallel processes instead. The libraries
    are looked up on entry, not once per process: SciPy loads its own OpenBLAS, apart from NumPy's, when
    ``scipy.linalg`` is first imported, possibly after an earlier block ran (a worker process's first job)."""
    with _blas["lock"]:
        if _blas["depth"] == 0:
            _blas["limiter"] = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        _blas["depth"] += 1
    try:
        yield
    finally:
        with _blas["lock"]:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                _blas["limiter"].restore_original_limits()
                _blas["limiter"] = None


def as_float64(x: np.ndarray) -> np.ndarray:
    """float64 values of a stored block (bf16 through its bits: exact, and far faster than the dtype cast)."""
    if x.dtype == BF16:
        return bits_to_float32(np.ascontiguousarray(x).view(np.uint16)).astype(np.float64)
    return np.asarray(x, np.float64)


def tall_blocks(W: np.ndarray, chunk: int):
    """Yield (r0, r1, float64 block) of the tall orientation T of an in-memory W (rows of W, or columns of a wide W)."""
    m, n = W.shape
    if m >= n:
        for r0, r1 in row_ranges(m, n, chunk):
            yield r0, r1, as_float64(W[r0:r1])
    else:
        step = max(1, chunk // max(m, 1))
        for c0 in range(0, n, step):
            yield c0, min(n, c0 + step), np.ascontiguousarray(as_float64(W[:, c0:c0 + step]).T)
