"""Hypothesis profiles: `ci` (derandomised, 20 examples per property, no database, no deadline) and `dev` (300 examples).

Choose with THREEGATE_HYPOTHESIS_PROFILE=ci|dev (default: ci)."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", False)
_cache = os.environ.get("THREEGATE_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax"))
jax.config.update("jax_compilation_cache_dir", os.path.abspath(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, database=None, max_examples=20, print_blob=True, **_common)
settings.register_profile("dev", max_examples=300, **_common)
settings.load_profile(os.environ.get("THREEGATE_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def session_runs(tmp_path_factory):
    """A run cache shared by the tests of one session (fresh each session, so no stale runs)."""
    path = tmp_path_factory.mktemp("runs")
    old = os.environ.get("THREEGATE_RUNS")
    os.environ["THREEGATE_RUNS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("THREEGATE_RUNS", None)
    else:
        os.environ["THREEGATE_RUNS"] = old


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory, session_runs):
    """Every claim on the tiny profile, planned, executed on 2 worker processes and decided once per session
    (the notebooks then decide from the same cached runs)."""
    import json
    import time

    from verify.cli import run_claims

    root = tmp_path_factory.mktemp("verify")
    t0 = time.time()
    code = run_claims("all", "tiny", str(root / "report"), quiet=True, workers=2)
    first = time.time() - t0
    report = json.loads((root / "report" / "report.json").read_text())
    return {"code": code, "report": report, "root": root, "first_seconds": first}
