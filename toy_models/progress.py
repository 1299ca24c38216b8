"""Progress display for long work: bars on a terminal, sparse plain lines in logs.

On a terminal (stderr is a TTY) every open ``Progress`` is one bar of a shared ``rich`` display, so a
plan bar and the bar of the run in progress show together, with the fields given to ``update`` (step,
reward, KL, rate...). When stderr is not a terminal, a ``Progress`` writes one line when it passes each
10 % of its total or 30 s after its previous line, and one line when it closes: a run of 400 steps
writes about a dozen lines, not one per step. ``quiet`` shows nothing.
"""

from __future__ import annotations

import os
import sys
import time

LINE_EVERY_SHARE = 0.10
LINE_EVERY_SECONDS = 30.0

_shared = {"progress": None, "open": 0}
_relay = {"send": None}  # set in worker processes: updates go to the parent, which displays them


def relay_to(send) -> None:
    """In a worker process: send every Progress event (a tuple) to ``send`` instead of displaying it; the
    parent replays the events with ``replay`` so per-run bars still show where the work runs."""
    _relay["send"] = send


def replay(event: tuple, open_bars: dict, quiet: bool = False) -> None:
    """Show, in this process, one event relayed from a worker: ("open" | "update" | "close", key, ...)."""
    kind, key = event[0], event[1]
    if kind == "open":
        open_bars[key] = Progress(event[2], event[3], quiet, unit=event[4])
    elif kind == "update" and key in open_bars:
        open_bars[key].update(event[2], **event[3])
    elif kind == "close" and key in open_bars:
        open_bars.pop(key).close(event[2])


def _rich_progress():
    """The shared rich display, started on first use."""
    if _shared["progress"] is None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        _shared["progress"] = RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=Console(file=sys.stderr), transient=False)
        _shared["progress"].start()
    _shared["open"] += 1
    return _shared["progress"]


def _release() -> None:
    _shared["open"] -= 1
    if _shared["open"] <= 0 and _shared["progress"] is not None:
        _shared["progress"].stop()
        _shared["progress"], _shared["open"] = None, 0


def _format(fields: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class Progress:
    """A bar (terminal) or sparse status lines (logs) for ``total`` units of work labelled ``label``."""

    def __init__(self, label: str, total: int, quiet: bool = False, unit: str = "step"):
        self.label, self.total, self.quiet, self.unit = label, max(int(total), 1), quiet, unit
        self.t0 = self.t_line = time.time()
        self.done, self.next_share = 0, LINE_EVERY_SHARE
        self.tty = sys.stderr.isatty() and not quiet
        self.task = None
        self.key = (os.getpid(), id(self))
        if _relay["send"] is not None and not quiet:
            _relay["send"](("open", self.key, label, self.total, unit))
            return
        if self.tty:
            self.bar = _rich_progress()
            self.task = self.bar.add_task(label, total=self.total, status="")

    def update(self, done: int, **fields) -> None:
        """Record that ``done`` units are finished; ``fields`` (reward, KL, accuracy...) are shown beside it."""
        if self.quiet:
            return
        if _relay["send"] is not None:
            _relay["send"](("update", self.key, done, fields))
            return
        self.done = done
        rate = done / max(time.time() - self.t0, 1e-9)
        status = f"{_format(fields)} ({rate:.3g} {self.unit}/s)".strip()
        if self.tty:
            self.bar.update(self.task, completed=done, status=status)
            return
        now = time.time()
        if done / self.total >= self.next_share or now - self.t_line >= LINE_EVERY_SECONDS:
            while self.next_share <= done / self.total:
                self.next_share += LINE_EVERY_SHARE
            self.t_line = now
            sys.stderr.write(f"{self.label}: {self.unit} {done}/{self.total} {status}\n")
            sys.stderr.flush()

    def close(self, message: str = "") -> None:
        """Finish the bar, or write the closing line."""
        if self.quiet:
            return
        if _relay["send"] is not None:
            _relay["send"](("close", self.key, message))
            return
        if self.tty:
            if self.task is not None:
                self.bar.remove_task(self.task)
                self.task = None
                _release()
            if message:
                sys.stderr.write(message + "\n")
            return
        sys.stderr.write(f"{self.label}: done {self.done}/{self.total} in {time.time() - self.t0:.1f} s{' ' + message if message else ''}\n")
        sys.stderr.flush()
