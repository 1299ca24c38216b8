"""The claims registry (verify/registry.py): the static id -> module table matches what the modules register, one
claim imports its own module only, a claim missing from the table is refused, report sections follow the table,
and a claim receives its run set with every leaf finished."""

import subprocess
import sys

import pytest

from verify import registry
from verify.registry import CLAIM_MODULES, Claim, Measurement, claim, load, load_all, positive, report_sections


def test_the_table_names_every_registered_claim_with_its_module():
    claims = load_all()
    assert list(claims) == list(CLAIM_MODULES)
    for cid, c in claims.items():
        assert c.measure.__module__ == f"verify.claims.{CLAIM_MODULES[cid]}"
        assert c.rule and c.paper_claims and c.title


def test_one_claim_imports_its_module_only():
    code = ("import sys; from verify.registry import load; c = load(['gate3.sparsity']);"
            "print(sorted(m for m in sys.modules if m.startswith('verify.claims.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['verify.claims.gate3']"


def test_a_claim_outside_the_table_is_refused():
    with pytest.raises(ValueError, match="not listed"):
        claim("gate9.nothing", paper=("C0",), title="t", paper_number="n", rule="r", runs=lambda p: [])(lambda ctx, runs: None)


def test_load_keeps_the_asked_order():
    assert list(load(["gate1.leash", "gate2.bounds"])) == ["gate1.leash", "gate2.bounds"]


def test_report_sections_follow_the_table():
    load_all()
    modules = [fn.__module__ for fn in report_sections()]
    order = list(dict.fromkeys(f"verify.claims.{m}" for m in CLAIM_MODULES.values()))
    assert modules == sorted(modules, key=order.index) and len(modules) >= 4


class _Ctx:
    """A context whose finished runs are (method, seed) pairs."""

    profile = "profile"

    def finished(self, runs):
        from verify.runsets import map_runs

        return map_runs(runs, lambda spec: (spec.train.method, spec.train.seed))


def test_a_claim_receives_its_run_set_finished():
    from verify.experiments.matched import matched
    from verify.profiles import get_profile

    p = get_profile("tiny")
    seen = {}

    def measure(ctx, runs):
        seen["runs"] = runs
        return Measurement("REPRODUCED", "h", {}, [positive("x", "REPRODUCED")])

    c = Claim("x.y", ("C0",), "t", "n", "r", lambda profile: {"m": matched(p), "one": p.control(0)}, measure)
    assert c.specs(p) == [*matched(p).rl, *matched(p).sft, p.control(0)]
    c.evaluate(_Ctx())
    assert seen["runs"]["m"].rl == tuple(("rl", s) for s in p.seeds) and seen["runs"]["one"] == ("rl", 0)


def test_statuses_are_checked():
    with pytest.raises(ValueError, match="status"):
        registry.positive("x", "MAYBE")
    with pytest.raises(ValueError, match="kind"):
        registry.claim("x", paper=(), title="t", paper_number="n", rule="r", runs=lambda p: [], kind="maybe")
    with pytest.raises(ValueError, match="status"):
        Measurement("YES", "h", {}, [])
