"""Toy transformers that really train: pretraining, RL and SFT fine-tuning under storage precisions.

Importing the package makes XLA's CPU matrix products single-threaded (``--xla_cpu_multi_thread_eigen=false``
added to ``XLA_FLAGS``, effective when no JAX computation has run yet in the process). A multi-threaded
Eigen product may split its sums differently with the number of threads, so the same run would give
different bits in-process, in a worker pinned to one core, or on a Ray node; with the flag a run is a
pure function of its spec wherever it executes (tests compare the executors bit for bit). On 2 busy
cores it cost nothing measurable; XLA still runs independent operations in parallel.
"""

import os

DETERMINISM_FLAG = "--xla_cpu_multi_thread_eigen=false"
if DETERMINISM_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DETERMINISM_FLAG}".strip()
