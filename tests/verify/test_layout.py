"""The layout of verify/ (issue 18): no claim module imports another, no import circle anywhere in the package
(imports inside functions included), every claim module under 400 lines, and no per-claim knob read out of a
dict keyed by profile (``extra[...]``)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "verify"
MAX_CLAIM_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{verify module: the verify modules it imports anywhere in its source}; ``from verify.x import y`` counts as
    importing ``verify.x.y`` when that is a module, else ``verify.x``."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` as a list of modules (empty when there is none): depth-first search."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = "done"
        stack.pop()
        return []

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


def test_the_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_circle_in_verify():
    graph = import_graph()
    assert "verify.finish" in graph and "verify.report" in graph
    assert find_cycle(graph) == []


def test_no_claim_module_imports_another():
    graph = import_graph()
    claims = {m for m in graph if m.startswith("verify.claims.")}
    assert len(claims) >= 9
    for m in claims:
        assert not (graph[m] & claims), (m, graph[m] & claims)


def test_claim_modules_are_short():
    for path in (ROOT / "claims").glob("*.py"):
        assert len(path.read_text().splitlines()) <= MAX_CLAIM_LINES, path.name


def test_no_knob_is_read_from_a_dict_by_profile():
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        assert "extra[" not in text, path
        assert ".get(p.name" not in text and "[p.name]" not in text, path
