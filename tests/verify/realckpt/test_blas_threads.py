"""The analyzer's linear algebra runs on one BLAS thread in every loaded BLAS library, SciPy's own included.

SciPy ships its own OpenBLAS, loaded when ``scipy.linalg`` is first imported. A worker process whose thread
count was set before that import ran LAPACK's eigensolver on two threads against the other worker and was
measured 5 to 10 times slower (a 28-layer pair: 1063 s before the fix)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import threadpoolctl

from verify.realckpt import stream as St


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


def test_single_blas_thread_covers_libraries_loaded_after_the_first_setting():
    code = textwrap.dedent("""
        import json
        import threadpoolctl
        from verify.realckpt import stream as St
        with St.single_blas_thread():   # a block run before SciPy is imported
            pass
        threadpoolctl.threadpool_limits(limits=2, user_api="blas")
        import scipy.linalg             # loads SciPy's OpenBLAS, with its default thread count
        before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        with St.single_blas_thread():
            with St.single_blas_thread():
                inside = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        print(json.dumps([before, inside, after]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, inside, after = json.loads(out)
    assert len(inside) >= 2, "expected NumPy's and SciPy's BLAS to be loaded"
    assert inside == [1] * len(inside)
    assert after == before


def test_single_blas_thread_restores_the_previous_counts_in_this_process():
    import scipy.linalg  # noqa: F401

    before = _blas_threads()
    with St.single_blas_thread():
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before
