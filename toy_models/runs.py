"""Run directories: where a run lives (keyed by its config and the hash of the code that produces it),
its resolved config and its metrics.jsonl. How a run folder is written, locked and verified is
``toy_models.run_store``."""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from toy_models.checkpoint import atomic_write_bytes, atomic_write_json, library_versions
from toy_models.config import config_hash, to_dict


def runs_root() -> Path:
    """Where runs are cached: $THREEGATE_RUNS, else ./runs."""
    return Path(os.environ.get("THREEGATE_RUNS", "runs")).resolve()


SOURCE_PACKAGES = ("theory", "toy_models")  # the code a run is a function of


@lru_cache(maxsize=1)
def source_hash() -> str:
    """Short hash of every .py file of the packages that produce a run (path and content, sorted).

    It is part of every run's cache key, so a code change can never silently reuse a stale run."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in SOURCE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


def run_dir(kind: str, cfg) -> Path:
    """The cache directory of a run: <root>/<kind>-<source hash>-<hash of the config>."""
    return runs_root() / f"{kind}-{source_hash()}-{config_hash(cfg)}"


def write_config(directory: Path, cfg, extra: dict | None = None) -> None:
    """Write the resolved config and library versions to config.json."""
    atomic_write_json(directory / "config.json", {"config": to_dict(cfg), "versions": library_versions(), **(extra or {})})


class MetricsLog:
    """Append-only metrics.jsonl; each record is appended as one line. Resuming keeps the records up to the
    resume step (rewritten atomically) and drops a last line a killed writer left half-written."""

    def __init__(self, path: Path, truncate_after_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after_step is not None and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a kill: it can only be the last one
                    continue
                if record.get("step", -1) <= truncate_after_step:
                    keep.append(line)
            atomic_write_bytes(self.path, "".join(k + "\n" for k in keep).encode())
        elif truncate_after_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        """Append ``record`` as one JSON line."""
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl file."""
    path = Path(path)
    return [json.loads(l) for l in path.read_text().splitlines() if l] if path.exists() else []
