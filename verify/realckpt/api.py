"""Python API of the real-checkpoint analyzer: one call, a pandas DataFrame of per-tensor rows and a summary dict.

    from verify.realckpt import analyze_pair
    rows, summary = analyze_pair("~/ckpt/base", "~/ckpt/tuned", rank=64)
    rows[["name", "kind", "layer", "sparsity_bf16", "principal_overlap_excess"]]
    summary["reading"]                         # the sentences the CLI prints

The options are the CLI's (``python -m verify pair --help``); the rows are exactly the rows the CLI writes to
``pair.csv`` (``records_frame``), and ``summary`` is ``pair.json`` without its ``tensors`` list. For several
tuned checkpoints of one base, ``analyze_pairs`` returns one (rows, summary) per checkpoint plus the C3 / C4
rows and summary of ``pairs``.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from toy_models.progress import Display, showing
from verify.realckpt.analyze import analyze
from verify.realckpt.options import SWEEP, Options
from verify.realckpt.reading import pair_reading, pairs_reading
from verify.realckpt.rows import FIRST, RUNS_FIRST, table
from verify.realckpt.summary import pair_summary, pairs_summary

def records_frame(records: list[dict], first: tuple = FIRST) -> pd.DataFrame:
    """Per-tensor records as a DataFrame with the columns and cells of ``pair.csv`` (``rows.table``)."""
    keys, rows = table(records, first)
    return pd.DataFrame(rows, columns=keys)


class PairAnalysis(NamedTuple):
    """The result of ``analyze_pair``: per-tensor rows (as ``pair.csv``) and the summary (``pair.json`` without rows)."""

    rows: pd.DataFrame
    summary: dict


class PairsAnalysis(NamedTuple):
    """The result of ``analyze_pairs``: one ``PairAnalysis`` per tuned checkpoint, the per-tensor C3 / C4 rows
    (as ``pairs.csv``) and the summary of ``pairs.json``."""

    pairs: list[PairAnalysis]
    runs: pd.DataFrame
    summary: dict


def _options(rank, alpha, include, exclude, sweep, draws, seed, level, sparsity_only, chunk) -> Options:
    return Options(rank=rank, alpha=alpha, include=include, exclude=exclude, sweep=tuple(sweep), draws=draws, seed=seed,
                   level=level, sparsity_only=sparsity_only, chunk=chunk)


def analyze_pair(base, tuned, *, rank: int = 64, alpha: float = 0.5, include: str | None = None, exclude: str | None = None,
                 sweep=SWEEP, draws: int = 200, seed: int = 0, level: float = 0.95, sparsity_only: bool = False,
                 chunk: int = 1 << 22, workers: int | None = None, quiet: bool = True) -> PairAnalysis:
    """Analyse a tuned checkpoint against its base (``python -m verify pair``): rows and summary (module docstring).

    ``workers``: processes for large checkpoints (default 2 above ``analyze.POOL_MIN_ELEMENTS`` elements, else 1;
    a script using more than one needs an ``if __name__ == "__main__":`` guard). Raises
    ``verify.realckpt.layout.BadInput`` (one sentence naming the file and tensor) on bad input."""
    opts = _options(rank, alpha, include, exclude, sweep, draws, seed, level, sparsity_only, chunk)
    with showing(Display("off" if quiet else "auto")):
        res = analyze(base, [tuned], opts, workers=workers)
    s = pair_summary(res.pairs[0])
    s["reading"] = pair_reading(s)
    rows = records_frame(s.pop("tensors"))
    return PairAnalysis(rows, s)


def analyze_pairs(base, tuned: list, *, consensus: str | None = None, rank: int = 64, alpha: float = 0.5,
                  include: str | None = None, exclude: str | None = None, sweep=SWEEP, draws: int = 200, seed: int = 0,
                  level: float = 0.95, sparsity_only: bool = False, chunk: int = 1 << 22, workers: int | None = None,
                  quiet: bool = True) -> PairsAnalysis:
    """Analyse several tuned checkpoints of one base (``python -m verify pairs``); give one run's checkpoints in
    step order for the consecutive-checkpoint numbers (C4)."""
    if len(tuned) < 2:
        raise ValueError("Argument `tuned` needs at least two checkpoints; use analyze_pair for one.")
    opts = _options(rank, alpha, include, exclude, sweep, draws, seed, level, sparsity_only, chunk)
    with showing(Display("off" if quiet else "auto")):
        res = analyze(base, list(tuned), opts, consensus=consensus, workers=workers)
    pairs = []
    summaries = []
    for p in res.pairs:
        s = pair_summary(p)
        s["reading"] = pair_reading(s)
        summaries.append(s)
        pairs.append(PairAnalysis(records_frame(s["tensors"]), {k: v for k, v in s.items() if k != "tensors"}))
    ps = pairs_summary(res, summaries)
    ps["reading"] = pairs_reading(ps)
    return PairsAnalysis(pairs, records_frame(res.c3, RUNS_FIRST), ps)
