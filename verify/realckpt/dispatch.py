"""Which analysis a job gets: the full one (``tensor``, which imports JAX through ``theory``) or the lean
sparsity-only pass (``sparsity``), imported only when needed so the command line and each worker load only
what its mode uses. Apart from ``job`` so that neither analysis module imports back into the dispatcher."""

from __future__ import annotations

from verify.realckpt.job import Job, TensorResult


def run(job: Job) -> TensorResult:
    """Analyse one job in the mode its options ask for (full or sparsity only); importable in a worker process."""
    if job.opts.sparsity_only:
        from verify.realckpt.sparsity import sparsity_tensor

        return sparsity_tensor(job)
    from verify.realckpt.stream import single_blas_thread
    from verify.realckpt.tensor import analyze_tensor

    with single_blas_thread():  # many small BLAS calls: a second thread only waits (stream.single_blas_thread)
        return analyze_tensor(job)
