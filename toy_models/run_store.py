"""The run store: how a run folder of the cache is written, locked, verified and set aside.

Guarantees (README, "Reliability"):

- **One writer per run.** Writing a run takes an exclusive ``fcntl.flock`` on ``<root>/.locks/<name>.lock``.
  The kernel releases it when its holder exits or dies, so a crashed process never leaves a lock that
  blocks; the holder writes its pid and host into the file for the message of a waiting process. Local
  workers, Ray tasks on a shared filesystem and separate ``verify`` calls take the same lock, so a second
  process waits for the run (saying so) and then reads it: it never trains it too.
- **Whole or not at all.** A run is written into ``<root>/<name>.partial/`` and renamed to ``<root>/<name>/``
  once complete, after ``manifest.json`` (size and SHA-256 of every other file) was written last inside
  it. A folder ``<root>/<name>/`` without a readable manifest is not a run. A run that fails (an
  exception, Ctrl-C, SIGTERM) removes its partial folder; one killed outright (SIGKILL, power loss)
  leaves it, with its resume checkpoint, for the next writer of the same run to continue from.
- **Verified reads.** ``finished(directory)`` checks a run against its manifest before it is used: sizes
  always, SHA-256 too unless ``$THREEGATE_VERIFY_CACHE`` is ``sizes`` (``full`` is the default; ``verify
  --verify-cache sizes`` sets it, for caches too large to hash). A damaged run is named in one sentence,
  moved to ``<root>/quarantine/<name>-<UTC time>/`` (with that sentence in ``QUARANTINE.txt``) and is
  then missing, so it is trained again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from toy_models.checkpoint import atomic_write_json
from toy_models.config import ConfigError
from toy_models.progress import display

MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"
LOCKS = ".locks"
QUARANTINE = "quarantine"
QUARANTINE_NOTE = "QUARANTINE.txt"
VERIFY_ENV = "THREEGATE_VERIFY_CACHE"
VERIFY_LEVELS = ("full", "sizes")

_active: set[Path] = set()  # partial folders this process is writing (removed on SIGTERM by ``discard_active``)
_verified: dict[Path, tuple] = {}  # run folder -> (stat of its files, level) at its last good check in this process


def verify_level() -> str:
    """How finished runs are checked: ``full`` (sizes and SHA-256, the default) or ``sizes`` (sizes only), from
    $THREEGATE_VERIFY_CACHE."""
    level = os.environ.get(VERIFY_ENV, "full") or "full"
    if level not in VERIFY_LEVELS:
        raise ConfigError(f"Environment variable {VERIFY_ENV} must be 'full' or 'sizes', got {level!r}.")
    return level


def partial_dir(directory: Path) -> Path:
    """Where the run of ``directory`` is written before it is renamed into place."""
    directory = Path(directory)
    return directory.with_name(directory.name + PARTIAL_SUFFIX)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(directory: Path) -> list[str]:
    """Every regular file under ``directory`` but the manifest, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def write_manifest(directory: Path) -> dict:
    """Write ``manifest.json`` into ``directory``: the size and SHA-256 of every other file under it."""
    directory = Path(directory)
    files = {rel: {"size": (directory / rel).stat().st_size, "sha256": _sha256(directory / rel)} for rel in _files(directory)}
    manifest = {"format": 1, "files": files}
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def check_run(directory: Path, level: str | None = None) -> str | None:
    """What is wrong with the finished run in ``directory`` (one clause naming the file), or None when every file
    of its manifest is present with its recorded size and, at level ``full``, its recorded SHA-256."""
    directory = Path(directory)
    level = level or verify_level()
    try:
        files = json.loads((directory / MANIFEST).read_text())["files"]
        items = [(str(rel), int(rec["size"]), str(rec["sha256"])) for rel, rec in files.items()]
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} cannot be read"
    for rel, size, _ in items:
        path = directory / rel
        if not path.is_file():
            return f"{rel} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{rel} has {actual} bytes where the manifest records {size}"
    if level == "full":
        for rel, _, digest in items:
            if _sha256(directory / rel) != digest:
                return f"{rel} does not match its SHA-256 in the manifest"
    return None


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def quarantine(directory: Path, problem: str) -> Path:
    """Move the damaged run ``directory`` to ``<root>/quarantine/<name>-<UTC time>/``, leave the reason there in
    QUARANTINE.txt and say it on stderr in one sentence; returns the new place."""
    directory = Path(directory)
    shelf = directory.parent / QUARANTINE
    shelf.mkdir(parents=True, exist_ok=True)
    target = shelf / f"{directory.name}-{_utc_stamp()}"
    n = 1
    while target.exists():
        n += 1
        target = shelf / f"{directory.name}-{_utc_stamp()}-{n}"
    os.rename(directory, target)
    _verified.pop(directory, None)
    sentence = (f"Cached run {directory.name} is damaged ({problem}); it was moved to {target} and will be "
                f"trained again.")
    (target / QUARANTINE_NOTE).write_text(sentence + "\n")
    sys.stderr.write(sentence + "\n")
    sys.stderr.flush()
    return target


def _stat_key(directory: Path) -> tuple:
    """Name, size, inode and modification time of every file under ``directory``: any write or replacement of a
    file changes it, so a run whose key is unchanged since its last good check need not be hashed again."""
    out = []
    for path in directory.rglob("*"):
        st = path.stat()
        if path.is_file():
            out.append((path.relative_to(directory).as_posix(), st.st_size, st.st_ino, st.st_mtime_ns))
    return tuple(sorted(out))


def _damage(directory: Path) -> str | None:
    """None when the run in ``directory`` passes its check at the current level (not checked again in this process
    while none of its files changed), else what is wrong."""
    level = verify_level()
    try:
        key = _stat_key(directory)
    except OSError:
        key = None
    seen = _verified.get(directory)
    if key is not None and seen is not None and seen[0] == key and (seen[1] == "full" or level == "sizes"):
        return None
    problem = check_run(directory, level)
    if problem is None and key is not None:
        _verified[directory] = (key, level)
    return problem


def verified_or_quarantined(directory: Path) -> bool:
    """For a caller holding the run's lock: True for a good finished run in ``directory``; a damaged one is
    quarantined (and False returned), as is an absent one (False)."""
    if not directory.is_dir():
        return False
    problem = _damage(directory)
    if problem is None:
        return True
    quarantine(directory, problem)
    return False


def finished(directory: Path) -> bool:
    """True when ``directory`` holds a finished run that passes its manifest check. A damaged run is quarantined
    (under its lock; when another process holds the lock, that process deals with it) and reported missing, so
    it is trained again."""
    directory = Path(directory)
    if not directory.is_dir():
        return False
    if _damage(directory) is None:
        return True
    with run_lock(directory, block=False) as held:
        return verified_or_quarantined(directory) if held else False


def _lock_path(directory: Path) -> Path:
    locks = directory.parent / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{directory.name}.lock"


@contextmanager
def run_lock(directory: Path, *, block: bool = True):
    """Hold the exclusive lock of the run ``directory`` inside the ``with`` block; yields True. When another
    process holds it, say so on the display and wait (``block``), or yield False at once (``block=False``)."""
    directory = Path(directory)
    fd = os.open(_lock_path(directory), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not block:
                yield False
                return
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process"
            display().note(f"{directory.name}: waiting for another process ({holder}) that is writing this run; "
                           "it will be read when finished, not trained again")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lock_is_free(directory: Path) -> bool:
    """True when no process holds the lock of the run ``directory`` right now."""
    with run_lock(directory, block=False) as held:
        return held


def stale_partials(root: Path) -> list[Path]:
    """Partial folders under ``root`` that nobody is writing: what processes killed outright left behind. The
    next writer of the same run resumes from one; deleting one is safe."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.glob("*" + PARTIAL_SUFFIX))
            if p.is_dir() and lock_is_free(p.with_name(p.name[: -len(PARTIAL_SUFFIX)]))]


class Writer:
    """The right to write one run: fill ``partial`` (it may hold what a killed writer left), then ``publish``."""

    def __init__(self, directory: Path, partial: Path):
        self.directory, self.partial = directory, partial
        self.published = self.kept = False

    def clear(self) -> None:
        """Start from an empty partial folder (drop what a killed writer left)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)

    def keep(self) -> None:
        """Leave the partial folder as it is when the ``with`` block ends (a deliberate stop, for tests)."""
        self.kept = True

    def publish(self) -> Path:
        """Write the manifest last, then rename the partial folder into place (replacing an older run there)."""
        for leftover in self.partial.rglob(".*.tmp"):
            leftover.unlink()
        write_manifest(self.partial)
        old = None
        if self.directory.exists():  # force: the old run stays readable until the new one is in place
            old = self.directory.with_name(f"{self.directory.name}.old-{os.getpid()}")
            os.rename(self.directory, old)
        os.rename(self.partial, self.directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _verified[self.directory] = (_stat_key(self.directory), "full")
        self.published = True
        return self.directory


@contextmanager
def writing(directory: Path, *, force: bool = False):
    """Exclusive writing of the run ``directory``: yields None when a verified finished run is there (maybe after
    waiting for the process that wrote it) and ``force`` is off, else a ``Writer``. If the block raises (or ends
    without ``publish`` or ``keep``), the partial folder is removed: a failed run leaves nothing behind."""
    directory = Path(directory)
    with run_lock(directory):
        if not force and verified_or_quarantined(directory):
            yield None
            return
        writer = Writer(directory, partial_dir(directory))
        writer.partial.mkdir(parents=True, exist_ok=True)
        _active.add(writer.partial)
        try:
            yield writer
        finally:
            _active.discard(writer.partial)
            if not (writer.published or writer.kept):
                shutil.rmtree(writer.partial, ignore_errors=True)


def discard_partial(directory: Path) -> bool:
    """Remove the partial folder of the run ``directory`` unless a process is writing it; True if removed."""
    partial = partial_dir(directory)
    with run_lock(directory, block=False) as held:
        if held and partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
            return True
    return False


def discard_active() -> None:
    """Remove the partial folders this process is writing (a worker told to stop, right before it exits)."""
    for partial in list(_active):
        shutil.rmtree(partial, ignore_errors=True)
    _active.clear()
