"""Compare two report.json files on what a verify call concluded: claims, verdicts, numbers, controls, notes.

Timings, the worker count and executor, the base model's folder, how many runs this call trained, the commit, date
and library versions are left out, and the source-hash part of every run folder name (``rl-<source hash>-<config hash>``) is masked, so a
report made after a code change that retrained identical runs compares equal to the one before it. Floats
compare exactly (NaN equals NaN): a restructuring must not move a single bit of a result.

    python -m verify.compare reports/tiny/report.json /path/to/baseline/report.json
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

IGNORED_META = ("seconds", "seconds_training", "seconds_deciding", "base_dir", "runs_executed", "workers", "executor",
                "commit", "date", "versions")
RUN_NAME = re.compile(r"\b(base|rl|sft|sft_onpolicy|dpo|simpo)-[0-9a-f]{10}-([0-9a-f]{16})\b")


def normalised(report: dict) -> dict:
    """The part of a report that states results: run folder names with their source hash masked, timing and
    machine fields of ``meta`` dropped."""
    out = json.loads(json.dumps(report))
    for key in IGNORED_META:
        out.get("meta", {}).pop(key, None)
    return _mask(out)


def _mask(x):
    if isinstance(x, str):
        return RUN_NAME.sub(r"\1-<src>-\2", x)
    if isinstance(x, dict):
        return {_mask(k): _mask(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_mask(v) for v in x]
    return x


def differences(a, b, path: str = "") -> list[str]:
    """Every place where ``a`` and ``b`` differ, as 'path: a != b' lines (empty when they are equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                out.append(f"{path}/{k}: {'missing' if k not in a else 'present'} != {'missing' if k not in b else 'present'}")
            else:
                out += differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{_label(x, i)}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    if isinstance(a, str) and isinstance(b, str) and a != b and max(len(a), len(b)) > 120:
        return [f"{path}: {_excerpt(a, b)}"]
    if type(a) is not type(b) or a != b:
        return [f"{path}: {a!r} != {b!r}"]
    return []


def _excerpt(a: str, b: str, width: int = 50) -> str:
    """Where two long strings first differ: '...a part...' != '...b part...' around that place."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    ja, jb = len(a), len(b)
    while ja > i and jb > i and a[ja - 1] == b[jb - 1]:
        ja, jb = ja - 1, jb - 1
    lo = max(0, i - width)
    return f"...{a[lo:ja + width]!r}... != ...{b[lo:jb + width]!r}..."


def _label(item, i: int) -> str:
    return item["id"] if isinstance(item, dict) and "id" in item else str(i)


def compare_files(first: Path, second: Path) -> list[str]:
    """Differences between two report.json files after ``normalised``."""
    a, b = (normalised(json.loads(Path(p).read_text())) for p in (first, second))
    return differences(a, b)


def main(argv=None) -> int:
    """Print the differences of two report.json files; exit status 0 when equal, 1 when not, 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m verify.compare FIRST/report.json SECOND/report.json", file=sys.stderr)
        return 2
    for p in argv:
        if not Path(p).is_file():
            print(f"error: {p} is not a file.", file=sys.stderr)
            return 2
    try:
        diff = compare_files(*map(Path, argv))
    except ValueError as e:
        print(f"error: a report is not valid JSON: {e}", file=sys.stderr)
        return 2
    for line in diff:
        print(line)
    claims = len(json.loads(Path(argv[0]).read_text()).get("claims", []))
    print(f"{len(diff)} differences over {claims} claims" if diff else f"identical results ({claims} claims)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
