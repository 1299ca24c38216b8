"""Sparsity-only mode (``--sparsity-only``): the changed share of every tensor and nothing else, near reading speed.

What mergekit-diff users run, done right for bf16: per chunk of both tensors, the bf16 bit patterns (F32 / F16
/ F64 tensors rounded to bf16 first), a NaN / inf check, and the bitwise change with +0 against -0 read as
unchanged, which equals the paper's relative probe for eta < 2^-8 (``theory.precision.changed_mask_relative``;
larger eta evaluates the formula), plus an fp16 export's changes when a side is not bf16. Chunks are small
(``CHUNK`` elements, a few hundred KiB per array) so that the handful of numpy passes per chunk run in cache:
the pass is bound by reading the files. No SVD, no null, no absolute probe; JAX is not imported.
"""

from __future__ import annotations

import time

import numpy as np

from verify.realckpt import stream as St
from verify.realckpt.changed import TIGHT_ETA, relative_changed
from verify.realckpt.job import Job, TensorResult
from verify.realckpt.layout import is_kernel, parse_name

CHUNK = 1 << 19
"""Elements per chunk in this mode (cache-sized: each numpy pass over it stays in L2)."""


def sparsity_tensor(job: Job) -> TensorResult:
    """Changed counts of one tensor name in every tuned checkpoint (module docstring); across several, the packed
    masks feed the C3 / C4 record (Jaccard, consecutive checkpoints)."""
    t_start = time.perf_counter()
    opts, name, info0 = job.opts, job.name, job.base
    chunk = min(opts.chunk, CHUNK)
    src0 = St.Source(info0, chunk, whole=info0.nbytes <= 4 * chunk)
    present = [(j, info) for j, info in enumerate(job.tuned) if info is not None]
    srcs = [St.Source(info, chunk, whole=info.nbytes <= 4 * chunk) for _, info in present]
    N = info0.size
    n = src0.shape[1]
    several = len(present) >= 2
    fp16 = info0.dtype != "BF16" or any(info.dtype != "BF16" for _, info in present)
    changed = [0] * len(present)
    bitwise = [0] * len(present)
    fp16_changed = [0] * len(present)
    consecutive = [0] * len(present)
    disagree = [0] * len(present)
    packed = [np.zeros((N + 7) // 8, np.uint8) for _ in present] if several else None
    for r0, r1 in src0.ranges():
        x0 = src0.rows(r0, r1)
        b0 = St.bf16_bits(x0, name, info0.file)
        f0 = St.to_fp16(x0) if fp16 else None
        prev = None
        for i, ((_, info), src) in enumerate(zip(present, srcs)):
            x1 = src.rows(r0, r1)
            b1 = St.bf16_bits(x1, name, info.file)
            bit = St.changed_bits(b0, b1)
            rel = bit if opts.eta < TIGHT_ETA else relative_changed(b0, b1, opts.eta)
            nb = int(np.count_nonzero(bit))
            bitwise[i] += nb
            changed[i] += nb if rel is bit else int(np.count_nonzero(rel))
            disagree[i] += 0 if rel is bit else int(np.count_nonzero(rel != bit))
            if f0 is not None:
                fp16_changed[i] += int(np.count_nonzero(f0 != St.to_fp16(x1)))
            if several:
                St.pack_into(packed[i], r0 * n, rel)
                if prev is not None:
                    consecutive[i] += int(np.count_nonzero(St.changed_bits(prev, b1)))
                prev = b1
    layer, kind = parse_name(name)
    res = TensorResult(name)
    for i, (j, info) in enumerate(present):
        rounded = [side for side, x in (("base", info0), ("tuned", info)) if x.dtype != "BF16"]
        res.records[j] = dict(
            name=name, shape=list(info0.shape), layer=layer, kind=kind, transposed=is_kernel(name) and len(info0.shape) == 2,
            size=N, dtype=info0.dtype if info0.dtype == info.dtype else f"{info0.dtype}/{info.dtype}",
            rounded_to_bf16="+".join(rounded), changed_bf16=changed[i], changed_bitwise=bitwise[i],
            rel_vs_bitwise=disagree[i],
            sparsity_bf16=1 - changed[i] / N, sparsity_bitwise=1 - bitwise[i] / N, sparsity_abs=None,
            sparsity_fp16=1 - fp16_changed[i] / N if fp16 else None)
    if several:
        from verify.realckpt.tensor import runs_record  # C3 / C4 observed numbers (no null in this mode)

        runs_record(job, res, packed, consecutive[1:])
    seconds = round(time.perf_counter() - t_start, 3)
    for rec in res.records.values():
        rec["seconds"] = seconds
    return res
