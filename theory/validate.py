"""Argument checks shared by every theory function.

Each check raises ``ValueError`` with one sentence that names the offending argument.
Value checks (finiteness, range) run only on concrete arrays, so the functions that call
them stay usable under ``jax.jit`` (inside a trace only shapes are checked).
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def require_nonempty(name: str, x) -> None:
    """Refuse an array with no elements."""
    if 0 in np.shape(x):
        raise ValueError(f"Argument `{name}` is empty (shape {tuple(np.shape(x))}); it needs at least one element.")


def require_ndim(name: str, x, ndim: int) -> None:
    """Refuse an array whose number of axes is not ``ndim``."""
    if np.ndim(x) != ndim:
        raise ValueError(f"Argument `{name}` must have {ndim} axes, got shape {tuple(np.shape(x))}.")


def require_finite(name: str, x) -> None:
    """Refuse NaN or infinite entries (skipped under tracing)."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x, dtype=np.float64)))):
        raise ValueError(f"Argument `{name}` contains NaN or infinite values.")


def require_same_shape(name_a: str, a, name_b: str, b) -> None:
    """Refuse two arrays whose shapes differ."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"Arguments `{name_a}` and `{name_b}` must have the same shape, got {tuple(np.shape(a))} and {tuple(np.shape(b))}."
        )


def require_matrix(name: str, x) -> None:
    """Refuse anything but a non-empty, finite 2-D array."""
    require_ndim(name, x, 2)
    require_nonempty(name, x)
    require_finite(name, x)


def require_open_unit(name: str, value: float) -> None:
    """Refuse a value outside the open interval (0, 1)."""
    if not (0.0 < float(value) < 1.0):
        raise ValueError(f"Argument `{name}` must lie in the open interval (0, 1), got {value}.")


def require_positive(name: str, value: float) -> None:
    """Refuse a value that is not strictly positive."""
    if not float(value) > 0.0:
        raise ValueError(f"Argument `{name}` must be positive, got {value}.")


def require_rank_index(name: str, k: int, limit: int) -> None:
    """Refuse ``k`` outside 1..limit (for example k larger than min(m, n))."""
    if int(k) != k or not (1 <= int(k) <= limit):
        raise ValueError(f"Argument `{name}` must be an integer in [1, {limit}], got {k}.")
