"""Per-tensor rows: the columns of ``pair.csv`` / ``pairs.csv`` and of the Python API's DataFrames (one definition)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

FIRST = ("name", "layer", "kind", "shape", "dtype", "size", "sparsity_bf16", "sparsity_bitwise", "sparsity_abs")
RUNS_FIRST = ("name", "layer", "kind", "size", "mean_jaccard", "mean_baseline", "excess", "ratio")


def _cell(key: str, v):
    if key == "shape":
        return "x".join(map(str, v))
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def table(records: list[dict], first: tuple = FIRST) -> tuple[list[str], list[list]]:
    """(columns, rows): ``first`` columns, then the rest sorted; shapes as "MxN", lists as JSON, missing values None."""
    keys = [k for k in first if any(k in r for r in records)] + sorted({k for r in records for k in r} - set(first))
    return keys, [[_cell(k, r.get(k)) for k in keys] for r in records]


def write_csv(path: Path, records: list[dict], first: tuple = FIRST) -> None:
    """Write the rows of ``table`` as CSV (None as an empty field)."""
    keys, rows = table(records, first)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        w.writerows([["" if v is None else v for v in row] for row in rows])
