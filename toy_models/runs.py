"""Run directories: resolved config, metrics.jsonl, checkpoints, a one-line progress display."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from toy_models.checkpoint import atomic_write_json, library_versions
from toy_models.config import config_hash, to_dict


def runs_root() -> Path:
    """Where runs are cached: $THREEGATE_RUNS, else ./runs."""
    return Path(os.environ.get("THREEGATE_RUNS", "runs")).resolve()


CACHE_VERSION = 1  # bump when a code change alters what a cached run would contain


def run_dir(kind: str, cfg) -> Path:
    """The cache directory of a run: <root>/<kind>-<hash of config and CACHE_VERSION>."""
    return runs_root() / f"{kind}-v{CACHE_VERSION}-{config_hash(cfg)}"


def write_config(directory: Path, cfg, extra: dict | None = None) -> None:
    """Write the resolved config and library versions to config.json."""
    atomic_write_json(directory / "config.json", {"config": to_dict(cfg), "versions": library_versions(), **(extra or {})})


class MetricsLog:
    """Append-only metrics.jsonl; each record is flushed as one line."""

    def __init__(self, path: Path, truncate_after_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after_step is not None and self.path.exists():
            keep = [l for l in self.path.read_text().splitlines() if l and json.loads(l).get("step", -1) <= truncate_after_step]
            self.path.write_text("".join(k + "\n" for k in keep))
        elif truncate_after_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """All records of a metrics.jsonl file."""
    path = Path(path)
    return [json.loads(l) for l in path.read_text().splitlines() if l] if path.exists() else []


class Progress:
    """One status line rewritten in place on a terminal, or plain lines when not a terminal."""

    def __init__(self, label: str, total: int, quiet: bool = False):
        self.label, self.total, self.quiet = label, total, quiet
        self.t0 = time.time()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, **fields) -> None:
        if self.quiet:
            return
        rate = step / max(time.time() - self.t0, 1e-9)
        parts = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        line = f"{self.label} step {step}/{self.total} {parts} ({rate:.1f} step/s)"
        if self.tty:
            sys.stderr.write("\r" + line[:160].ljust(160))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")
