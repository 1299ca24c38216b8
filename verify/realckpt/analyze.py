"""Whole checkpoints: match tensor names, analyse every name (``tensor.analyze_tensor``, in a pool of worker
processes on several cores), and collect the per-tensor results of every (base, tuned) pair.

Matching. Tensors are compared by name after --include / --exclude: names missing on one side, shape
mismatches and non-float tensors are listed, not fatal. ``matched_share`` is the share of parameters that
were compared, out of the larger side's selected float parameters; below ``options.MIN_MATCHED`` the
analysis is partial (the CLI warns and exits with status 3 unless --allow-partial).

Parallelism. Tensor names are independent: with ``workers`` > 1 they run in a process pool (spawned, one
BLAS thread each), largest first so the two cores finish together; each worker reads its tensors itself and
sends back records, null counts and consensus grids only. Results do not depend on the number of workers
(every random draw comes from ``theory.null.null_rng`` of the tensor name). Spawned workers import the main
module again, so a script calling the analysis with workers > 1 needs the usual ``if __name__ == "__main__":``
guard (the command line and notebooks need nothing).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from verify.realckpt.dispatch import run as run_job
from verify.realckpt.job import Job, TensorResult
from verify.realckpt.layout import BadInput, Checkpoint, order_key, parse_name
from verify.realckpt.options import Options

POOL_MIN_ELEMENTS = 1 << 25
"""Below this many elements to read the analysis runs in this process (a pool's start costs seconds)."""


@dataclass
class Matching:
    """Tensor names of a (base, tuned) pair: compared, missing from tuned, extra in tuned, shape-mismatched, skipped."""

    common: list[str]
    missing: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    mismatched: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    matched_share: float = 1.0


def _head_note(absent: Checkpoint) -> str:
    embed = [n for n in absent.tensors if parse_name(n)[1] == "embed"]
    if absent.tied_embeddings:
        return f"head tied to the embedding ({'`' + embed[0] + '`' if embed else 'embedding'}; config.json tie_word_embeddings = true)"
    return f"head absent: tied to the embedding ({'`' + embed[0] + '`' if embed else 'none found'}) or not saved"


def match(base: Checkpoint, tuned: Checkpoint, opts: Options) -> Matching:
    """Match tensors by name after --include / --exclude: missing, extra and shape-mismatched ones are listed,
    non-float ones skipped. A head (``lm_head``-like) present on one side only is reported as tied / absent.
    ``matched_share``: compared parameters / max(selected float parameters of base, of tuned), a head that
    config.json declares tied to the embedding left out."""
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
    tied = {i["name"] for i in out.missing + out.extra if i["note"].startswith("head tied")}  # stored once, compared as the embedding
    floats = lambda ck, names: sum(ck.tensors[n].size for n in names - tied if ck.tensors[n].is_float)  # noqa: E731
    largest = max(floats(base, b), floats(tuned, t))
    out.matched_share = sum(base.tensors[n].size for n in out.common) / largest if largest else 0.0
    return out


@dataclass
class PairResult:
    """One (base, tuned) pair: matching, per-tensor records and null statistics (``summary.pair_summary``)."""

    base: str
    tuned: str
    options: Options
    matching: Matching
    records: list[dict] = field(default_factory=list)
    nulls: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Result:
    """Everything one ``pair`` / ``pairs`` call computed: the pairs, and across runs (C3, C4) the per-tensor
    records, their null statistics and block-averaged consensus maps."""

    base: str
    pairs: list[PairResult]
    options: Options
    c3: list[dict] = field(default_factory=list)
    c3_nulls: list[dict] = field(default_factory=list)
    consensus: dict = field(default_factory=dict)
    workers: int = 1


def default_workers(elements: int) -> int:
    """Worker processes: 1 for small inputs, else up to 2 (the cores this suite is sized for) within os.cpu_count()."""
    return 1 if elements < POOL_MIN_ELEMENTS else max(1, min(2, os.cpu_count() or 1))


def run_jobs(jobs: list[Job], workers: int, done=None):
    """Yield the result of every job (in completion order), in this process, a spawned process pool (full
    analysis: its linear algebra holds the GIL between BLAS calls) or threads (sparsity only: reads and numpy
    passes release the GIL, and a pool's start would cost more than the whole pass)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file) and not (jobs and jobs[0].opts.sparsity_only):
        workers = 1  # spawned workers re-import the main module; one read from stdin cannot be
    if workers <= 1:
        for job in jobs:
            res = run_job(job)
            if done:
                done(job.name)
            yield res
        return
    order = sorted(jobs, key=lambda j: -j.base.size)  # largest first: the workers end together
    if jobs and jobs[0].opts.sparsity_only:
        pool = ThreadPoolExecutor(max_workers=workers)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(run_job, job): job.name for job in order}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                name = pending.pop(fut)
                res = fut.result()  # re-raises a worker's BadInput here
                if done:
                    done(name)
                yield res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def analyze(base_path, tuned_paths: list, opts: Options, consensus: str | None = None,
            workers: int | None = None) -> Result:
    """Analyse every tuned checkpoint against one base, one tensor name at a time (module docstring).

    For several tuned checkpoints (given in step order when they are one run's checkpoints) each tensor name
    also gets its C3 / C4 record; names matching ``consensus`` get a consensus map. Raises ``BadInput`` (one
    sentence naming the file / tensor) on unreadable input or when nothing matches."""
    from toy_models.progress import Progress

    t_start = time.perf_counter()
    base = Checkpoint(base_path, "base checkpoint")
    tuned = [Checkpoint(p, f"tuned checkpoint {i + 1}" if len(tuned_paths) > 1 else "tuned checkpoint")
             for i, p in enumerate(tuned_paths)]
    matchings = [match(base, t, opts) for t in tuned]
    for t, mt in zip(tuned, matchings):
        if not mt.common:
            raise BadInput(f"No tensor of the base checkpoint {base.path} matches a tensor of {t.path} by name, shape and float dtype"
                           + (" after --include/--exclude." if opts.include or opts.exclude else "."))
    try:
        rx = re.compile(consensus) if consensus else None
    except re.error as e:
        raise BadInput(f"Option --consensus is not a valid regular expression ({e}).") from None
    common = [set(mt.common) for mt in matchings]
    names = sorted(set().union(*common), key=order_key)
    jobs = [Job(n, base.tensors[n], tuple(t.tensors[n] if n in c else None for t, c in zip(tuned, common)), opts,
                consensus=bool(len(tuned) > 1 and rx is not None and rx.search(n) and len(base.tensors[n].shape) == 2))
            for n in names]
    elements = sum(j.base.size * (1 + sum(i is not None for i in j.tuned)) for j in jobs)
    workers = default_workers(elements) if workers is None else max(1, int(workers))
    pairs = [PairResult(str(base.path), str(t.path), opts, mt) for t, mt in zip(tuned, matchings)]
    res = Result(str(base.path), pairs, opts, workers=workers)
    results: dict[str, TensorResult] = {}
    bar = Progress("pairs" if len(tuned) > 1 else "pair", len(names))
    count = [0]

    def done(name):
        count[0] += 1
        bar.update(count[0], tensor=name)

    try:
        for tr in run_jobs(jobs, workers, done):
            results[tr.name] = tr
    finally:
        bar.close()
    for name in names:  # file order, whatever the completion order
        tr = results[name]
        for j, rec in tr.records.items():
            pairs[j].records.append(rec)
            pairs[j].nulls.append(tr.nulls.get(j, {}))
        if tr.c3 is not None:
            res.c3.append(tr.c3)
            res.c3_nulls.append(tr.c3_nulls)
        if tr.consensus is not None:
            res.consensus[name] = tr.consensus
    elapsed = time.perf_counter() - t_start
    for p in pairs:
        p.seconds = elapsed
    return res
