"""Every notebook executes top to bottom on the tiny profile (CI runs them all)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tiny_report, tmp_path, monkeypatch):
    monkeypatch.setenv("THREEGATE_PROFILE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    verdict_words = ("REPRODUCED", "INCONCLUSIVE", "CONTROL FAILED", "PASS", "FAIL")  # claims and checks
    assert any(any(w in "".join(o.get("text", "")) for w in verdict_words) for c in nb.cells for o in c.get("outputs", []))
