"""The unit of work of the analyzer: one tensor name across the base and every tuned checkpoint, and its result.

Kept apart from ``tensor`` (the full analysis, which imports JAX through ``theory``) and ``sparsity`` (the
lean sparsity-only pass), so that the command line and the worker pool import only what a mode needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verify.realckpt.layout import TensorInfo
from verify.realckpt.options import Options


@dataclass(frozen=True)
class Job:
    """One tensor name: its base TensorInfo, one TensorInfo (or None) per tuned checkpoint, the options, and
    whether to draw a consensus map."""

    name: str
    base: TensorInfo
    tuned: tuple
    opts: Options
    consensus: bool = False


@dataclass
class TensorResult:
    """What analysing a Job returns: per run index, the record and the null statistics; across runs (pairs)
    the C3 / C4 record, its null statistics and a consensus map."""

    name: str
    records: dict = field(default_factory=dict)
    nulls: dict = field(default_factory=dict)
    c3: dict | None = None
    c3_nulls: dict = field(default_factory=dict)
    consensus: dict | None = None
