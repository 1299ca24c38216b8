"""Where a verify report goes, checked before anything trains, so that a report never replaces what it did not write.

- ``reports/<profile>/`` for ``all``, ``reports/<profile>/<target>/`` for any other target (``sweeps``, ``gates``,
  ``everything``, one claim id, or several ids joined by ``+``): running one claim never replaces the
  profile's full report.
- An explicit ``--out`` must be a folder that can be created and written, and a report already there is
  replaced only by a report of the same profile that holds all of its claims; otherwise the command stops
  with one sentence (exit status 2) in a few seconds, before any training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from toy_models.config import ConfigError


def default_out(target: str, profile_name: str) -> Path:
    """The report folder of a target: reports/<profile> for 'all', reports/<profile>/<target> for any other
    (claim ids joined by '+'), so a partial run never replaces the profile's full report."""
    if target == "all":
        return Path("reports") / profile_name
    ids = [t.strip() for t in target.split(",") if t.strip()]
    return Path("reports") / profile_name / "+".join(ids)


def prepare_out(out_dir: Path, profile_name: str, claim_ids: list[str]) -> None:
    """Check, before anything trains, that the report can be written into ``out_dir`` without destroying what this
    command did not write: the folder can be created and written (its figures/ folder too), and a report already
    there is of the same profile with no claim this run lacks. Raises ConfigError with one sentence otherwise."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"Report folder {out_dir} cannot be created ({e.strerror or e}); choose another --out.") from None
    for folder in (out_dir, out_dir / "figures"):
        if not folder.exists():
            continue
        probe = folder / f".write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"Report folder {folder} is not writable ({e.strerror or e}); choose another --out.") from None
    report = out_dir / "report.json"
    if report.exists():
        try:
            old = json.loads(report.read_text())
            old_profile, old_ids = old["profile"], {c["id"] for c in old["claims"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"Report folder {out_dir} holds a report.json this suite did not write; choose another "
                              "--out.") from None
        lost = sorted(old_ids - set(claim_ids))
        if old_profile != profile_name or lost:
            what = f"profile {old_profile!r}" if old_profile != profile_name else f"claims this run lacks ({', '.join(lost)})"
            raise ConfigError(f"Report folder {out_dir} holds a report of {what}, which this run would replace; choose "
                              "another --out (the default keeps reports of different targets apart).")
    elif (out_dir / "report.md").exists():
        raise ConfigError(f"Report folder {out_dir} holds a report.md this suite did not write; choose another --out.")
