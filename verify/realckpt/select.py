"""Masks of docs/science.md section 4 over row chunks, without sorting or holding every key.

``Selector`` finds the ``count`` entries of a matrix with the largest uint32 key (a float32 magnitude's bits, or
their complement for the smallest magnitudes): a 65536-bin histogram of the high 16 bits finds the bin of the
threshold, a second histogram of the low 16 bits inside that bin finds the threshold itself, and a last pass
writes the packed mask; ties at the threshold go to the lower row-major index of the analysed orientation, as
``theory.spectral``'s masks do. Memory: two histograms, the packed mask and the tie positions.
"""

from __future__ import annotations

import numpy as np

from verify.realckpt.stream import pack_into, row_ranges, row_step, single_blas_thread


def magnitude_key(x: np.ndarray) -> np.ndarray:
    """uint32 key that orders |x| (as float32; non-negative floats order as their bits)."""
    return np.abs(np.asarray(x, np.float32)).view(np.uint32)


class Selector:
    """The ``count`` largest uint32 keys of an (n_rows, n_cols) matrix (module docstring), fed chunk by chunk.

    Use: ``add_high(keys)`` over every chunk (or ``set_high(histogram, low_bits)`` when every key's low 16 bits
    are known), then, if ``need_low``, ``add_low(keys)`` over every chunk, then ``write(r0, keys, values)`` over
    every chunk and ``finish()`` for the packed mask. Optional ``values`` (small non-negative integers per entry,
    fewer than ``value_bins``) are histogrammed over the selected entries into ``value_hist``."""

    def __init__(self, n_rows: int, n_cols: int, count: int, transposed: bool = False, value_bins: int = 0x7F80):
        self.n_rows, self.n_cols, self.transposed = n_rows, n_cols, transposed
        self.count = min(max(int(count), 0), n_rows * n_cols)
        self.high = np.zeros(65536, np.int64)
        self.low = np.zeros(65536, np.int64)
        self.low_bits = None
        self.packed = np.zeros((n_rows * n_cols + 7) // 8, np.uint8)
        self.ties: list[np.ndarray] = []
        self.tie_values: list[np.ndarray] = []
        self.value_hist = np.zeros(value_bins, np.int64)
        self.above = 0
        self.threshold = None
        self.trivial = self.count in (0, n_rows * n_cols)

    def add_high(self, keys: np.ndarray) -> None:
        """Histogram of the high 16 bits of a chunk's keys."""
        self.high += np.bincount((keys.reshape(-1) >> 16).astype(np.intp), minlength=65536)

    def set_high(self, hist, low_bits: int) -> None:
        """Give the high-16-bit histogram directly, with the low 16 bits every key has (bf16 magnitudes)."""
        self.high = np.asarray(hist, np.int64)
        self.low_bits = int(low_bits)

    def _bin(self) -> tuple[int, int]:
        """(high bin of the threshold, number of keys in higher bins)."""
        from_top = np.cumsum(self.high[::-1])
        idx = int(np.searchsorted(from_top, self.count))
        return 65535 - idx, int(from_top[idx - 1]) if idx > 0 else 0

    @property
    def need_low(self) -> bool:
        """True when the threshold must be resolved by a pass over the low 16 bits."""
        return not self.trivial and self.low_bits is None

    def add_low(self, keys: np.ndarray) -> None:
        """Histogram of the low 16 bits of the keys inside the threshold's high bin."""
        k = keys.reshape(-1)
        inside = k[(k >> 16) == self._bin()[0]]
        self.low += np.bincount((inside & 0xFFFF).astype(np.intp), minlength=65536)

    def _threshold(self) -> np.uint32:
        if self.threshold is None:
            hi, above = self._bin()
            if self.low_bits is not None:
                lo = self.low_bits
            else:
                from_top = np.cumsum(self.low[::-1])
                lo = 65535 - int(np.searchsorted(from_top, self.count - above))
            self.threshold = np.uint32((hi << 16) | lo)
        return self.threshold

    def write(self, r0: int, keys: np.ndarray, values: np.ndarray | None = None) -> None:
        """Write the entries of rows r0.. above the threshold; remember the ties."""
        k = keys.reshape(-1)
        if self.trivial:
            if self.count and values is not None:
                self.value_hist += np.bincount(values.reshape(-1), minlength=self.value_hist.size)
            return
        t = self._threshold()
        big = k > t
        self.above += int(np.count_nonzero(big))
        pack_into(self.packed, r0 * self.n_cols, big)
        tie = k == t
        self.ties.append(np.flatnonzero(tie) + r0 * self.n_cols)
        if values is not None:
            v = values.reshape(-1)
            self.value_hist += np.bincount(v[big], minlength=self.value_hist.size)
            self.tie_values.append(v[tie])

    def finish(self) -> np.ndarray:
        """The packed mask: entries above the threshold plus the first ties in the analysed row-major order."""
        if self.trivial:
            if self.count:
                pack_into(self.packed, 0, np.ones(self.n_rows * self.n_cols, bool))
            return self.packed
        tie = np.concatenate(self.ties) if self.ties else np.zeros(0, np.int64)
        vals = np.concatenate(self.tie_values) if self.tie_values else None
        if self.transposed:  # order ties by their row-major index in the transposed (analysed) matrix
            order = np.argsort((tie % self.n_cols) * self.n_rows + tie // self.n_cols, kind="stable")
            tie = tie[order]
            vals = vals[order] if vals is not None else None
        take = self.count - self.above
        chosen = tie[:take]
        np.bitwise_or.at(self.packed, chosen >> 3, (0x80 >> (chosen & 7)).astype(np.uint8))
        if vals is not None:
            self.value_hist += np.bincount(vals[:take], minlength=self.value_hist.size)
        return self.packed


def select_packed(keys, n_rows: int, n_cols: int, count: int, transposed: bool, chunk: int) -> np.ndarray:
    """Packed mask of the ``count`` largest keys of a matrix given by row chunks ``keys(r0, r1)`` (``Selector``)."""
    sel = Selector(n_rows, n_cols, count, transposed)
    ranges = list(row_ranges(n_rows, n_cols, chunk))
    for r0, r1 in ranges:
        sel.add_high(keys(r0, r1))
    if sel.need_low:
        for r0, r1 in ranges:
            sel.add_low(keys(r0, r1))
    for r0, r1 in ranges:
        sel.write(r0, keys(r0, r1))
    return sel.finish()


def principal_keys(U: np.ndarray, s: np.ndarray, V: np.ndarray, chunk: int):
    """Row-chunk key function of the principal mask: |U diag(s) V^T| as float32 (``theory.spectral.principal_mask_from_factors``)."""
    n = V.shape[0]
    Us = (U * s).astype(np.float32)
    Vt = np.ascontiguousarray(V.T.astype(np.float32))
    buf = np.empty((row_step(n, chunk), n), np.float32)

    def keys(r0, r1):
        out = buf[: r1 - r0]
        np.matmul(Us[r0:r1], Vt, out=out)
        return np.abs(out, out=out).view(np.uint32)

    return keys


def principal_mask_packed(U: np.ndarray, s: np.ndarray, V: np.ndarray, alpha: float, transposed: bool = False,
                          chunk: int = 1 << 22) -> np.ndarray:
    """Packed principal mask (LIFT, docs/science.md section 4): the top ``alpha`` share of |U diag(s) V^T| (float32
    scores, as ``theory.spectral.principal_mask_from_factors``), ``mask_count(m n, alpha)`` entries, ties to the
    lower row-major index of the analysed orientation. U (m, k), V (n, k) in the stored orientation."""
    from theory.spectral import mask_count

    m, n = U.shape[0], V.shape[0]
    with single_blas_thread():
        return select_packed(principal_keys(U, s, V, chunk), m, n, mask_count(m * n, alpha), transposed, chunk)


def low_magnitude_mask_packed(W: np.ndarray, alpha: float, transposed: bool = False, chunk: int = 1 << 22) -> np.ndarray:
    """Packed low-magnitude mask (docs/science.md section 4): the bottom ``alpha`` share of |W| (as stored, in
    float32), ``mask_count(m n, alpha)`` entries, ties to the lower row-major index of the analysed orientation
    (as ``theory.spectral.low_magnitude_mask``)."""
    from theory.spectral import mask_count

    m, n = W.shape
    keys = lambda r0, r1: ~magnitude_key(W[r0:r1])  # noqa: E731
    return select_packed(keys, m, n, mask_count(m * n, alpha), transposed, chunk)
