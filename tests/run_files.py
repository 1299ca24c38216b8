"""What two runs must share bit for bit: every file of a run folder, its summary without the wall time, and not
its manifest (which hashes the summary, wall time included)."""

import json
from pathlib import Path

from toy_models.run_store import MANIFEST


def run_files(run: Path) -> dict[str, object]:
    """Relative path -> bytes for every file of ``run`` but the manifest; summary.json as a dict without "seconds"."""
    out: dict[str, object] = {}
    for path in sorted(p for p in Path(run).rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(run).as_posix()
        if rel == "summary.json":
            summary = json.loads(path.read_text())
            summary.pop("seconds")
            out[rel] = summary
        else:
            out[rel] = path.read_bytes()
    return out
