"""Progress display for long work: bars on a terminal, sparse plain lines in logs, or nothing.

What a process shows is one ``Display``, made by the command line (``--quiet`` makes a silent one) and set
for the process with ``showing(display)``; library code never takes a flag for it, it opens a ``Progress``
and the current display decides. On a terminal (stderr is a TTY) every open ``Progress`` is one bar of a
shared ``rich`` display, so a plan bar and the bar of the run in progress show together, with the fields
given to ``update`` (step, reward, KL, rate...). When stderr is not a terminal, a ``Progress`` writes one
line when it passes each 10 % of its total or 30 s after its previous line, and one line when it closes: a
run of 400 steps writes about a dozen lines, not one per step. In a worker process the display relays
every event to the parent (``relay_to``), which shows it with its own display (``replay``).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

LINE_EVERY_SHARE = 0.10
LINE_EVERY_SECONDS = 30.0

_shared = {"progress": None, "open": 0}


class Display:
    """Where this process shows progress: ``"auto"`` (bars on a terminal, sparse lines in logs), ``"off"``
    (nothing), or relayed to a parent process by ``send`` (a callable taking one event tuple)."""

    def __init__(self, mode: str = "auto", send=None):
        if mode not in ("auto", "off"):
            raise ValueError(f"Display mode must be 'auto' or 'off', got {mode!r}.")
        self.mode, self.send = mode, send

    @property
    def on(self) -> bool:
        """True unless this display shows nothing."""
        return self.mode != "off"

    @property
    def tty(self) -> bool:
        """True when progress is drawn as bars on a terminal here (not relayed, not off)."""
        return self.on and self.send is None and sys.stderr.isatty()

    def note(self, text: str) -> None:
        """Show a one-off line (for example that a run waits for another process), unless the display is off."""
        if not self.on:
            return
        if self.send is not None:
            self.send(("note", None, text))
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def log_line(self, text: str) -> None:
        """A line for logs only: written when stderr is not a terminal (a terminal shows the bars instead)."""
        if self.on and self.send is None and not sys.stderr.isatty():
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


_current = {"display": Display()}


def display() -> Display:
    """The display of this process (``Display("auto")`` unless a command line or a worker set another)."""
    return _current["display"]


def set_display(new: Display) -> None:
    """Make ``new`` the display of this process for good (worker processes set theirs once)."""
    _current["display"] = new


@contextmanager
def showing(new: Display):
    """Use ``new`` as this process's display inside the ``with`` block, then restore the previous one."""
    old = _current["display"]
    _current["display"] = new
    try:
        yield new
    finally:
        _current["display"] = old


def relay_to(send) -> None:
    """In a worker process: send every Progress event (a tuple) to ``send`` instead of displaying it; the
    parent replays the events with ``replay`` so per-run bars still show where the work runs."""
    set_display(Display("auto", send))


def replay(event: tuple, open_bars: dict) -> None:
    """Show, in this process, one event relayed from a worker: ("open" | "update" | "close" | "note", key, ...)."""
    kind, key = event[0], event[1]
    if kind == "open":
        open_bars[key] = Progress(event[2], event[3], unit=event[4])
    elif kind == "update" and key in open_bars:
        open_bars[key].update(event[2], **event[3])
    elif kind == "close" and key in open_bars:
        open_bars.pop(key).close(event[2])
    elif kind == "note":
        display().note(event[2])


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
    """A bar (terminal) or sparse status lines (logs) for ``total`` units of work labelled ``label``, shown by
    the display current when it is opened (nothing when that display is off)."""

    def __init__(self, label: str, total: int, unit: str = "step"):
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.display = display()
        self.silent = not self.display.on
        self.t0 = self.t_line = time.time()
        self.done, self.next_share = 0, LINE_EVERY_SHARE
        self.tty = self.display.tty
        self.task = None
        self.key = (os.getpid(), id(self))
        if self.silent:
            return
        if self.display.send is not None:
            self.display.send(("open", self.key, label, self.total, unit))
            return
        if self.tty:
            self.bar = _rich_progress()
            self.task = self.bar.add_task(label, total=self.total, status="")

    def update(self, done: int, **fields) -> None:
        """Record that ``done`` units are finished; ``fields`` (reward, KL, accuracy...) are shown beside it."""
        if self.silent:
            return
        if self.display.send is not None:
            self.display.send(("update", self.key, done, fields))
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

    def abandon(self) -> None:
        """Stop showing this bar without a closing line (the work was interrupted: the command says so once)."""
        if not self.silent and self.tty and self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
            _release()
        self.silent = True

    def close(self, message: str = "") -> None:
        """Finish the bar, or write the closing line."""
        if self.silent:
            return
        if self.display.send is not None:
            self.display.send(("close", self.key, message))
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
