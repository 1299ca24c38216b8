"""The output folder of ``pair`` / ``pairs``: written only after the analysis succeeded, never touching foreign files.

Everything is first written into a temporary folder beside ``--out``. Then:
- ``--out`` absent: the temporary folder is renamed to it (atomic);
- ``--out`` empty, or holding an earlier output of this command (its manifest ``MANIFEST`` lists the files that
  output wrote): each new file is moved into place (``os.replace``, atomic per file) and files of the earlier
  output that the new one does not write are removed; files the manifest does not list are never touched,
  and if a new file would replace one of them the command refuses before moving anything;
- ``--out`` not empty and without a manifest (not an output of this command): refused, nothing touched.
The manifest is written first as the union of the old and new lists and last as the new list, so an
interrupted move leaves every file of the command listed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from verify.realckpt.layout import BadInput

MANIFEST = ".verify-pair-files.json"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _manifest(out: Path) -> list[str]:
    """The files an earlier output listed (relative paths inside ``out``); BadInput if unreadable or unsafe."""
    try:
        files = json.loads((out / MANIFEST).read_text())["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInput(f"Output folder {out} holds a damaged {MANIFEST}; it is left as it is: choose another --out.") from None
    for f in files:
        p = PurePosixPath(f)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            raise BadInput(f"Output folder {out} holds a {MANIFEST} naming {f!r} outside it; it is left as it is: choose another --out.")
    return files


def _write_manifest(out: Path, files: list[str]) -> None:
    tmp = out / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": sorted(set(files))}, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)


def check_out(out) -> tuple[Path, list[str] | None]:
    """(resolved folder, files of an earlier output or None); BadInput for a file, or a non-empty folder without a manifest."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise BadInput(f"Output path {out} exists and is not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise BadInput(f"Output folder {out} is not empty and holds no earlier output of this command (no {MANIFEST}); "
                           "nothing was written: choose an empty or new --out.")
        return out, _manifest(out)
    return out, None


@contextmanager
def staged_dir(out):
    """Yield a fresh temporary folder; on success move its files into ``out`` as the module docstring says, on any
    error delete it and leave ``out`` as it was."""
    out, old = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        new = _files(tmp)
        if not out.exists():
            _write_manifest(tmp, new)
            os.replace(tmp, out)
            return
        ours = set(old or [])
        foreign = [f for f in new if (out / f).exists() and f not in ours]
        if foreign:
            raise BadInput(f"Output folder {out} holds {foreign[0]}, which an earlier output of this command did not write; "
                           "nothing was replaced: choose another --out.")
        _write_manifest(out, [*ours, *new])
        for f in new:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / f, out / f)
        for f in sorted(ours - set(new)):
            p = out / f
            if p.is_file():
                p.unlink()
            for parent in p.parents:  # remove folders that only held our files
                if parent == out or not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
        _write_manifest(out, new)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
