"""Stopping on Ctrl-C and SIGTERM: one line, exit status 130 or 143, no half-written run left behind.

A command line runs its work inside ``stoppable``: Ctrl-C raises ``KeyboardInterrupt`` and SIGTERM raises
``Terminated`` in the main thread, so the same cleanup runs for both (a run being written removes its
partial folder, ``toy_models.run_store.writing``), then one line is printed and the status is 128 + the
signal number. Worker processes do not take Ctrl-C themselves (the terminal sends it to the whole
process group): ``worker_signals`` makes them ignore SIGINT and, on SIGTERM from their driver, remove the
partial folders they were writing and exit at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread, like KeyboardInterrupt for Ctrl-C)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def shielded():
    """Ignore SIGINT and SIGTERM inside the block (while stopping workers after a first signal), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def stoppable(work, message: str) -> int:
    """Run ``work()`` (returns an exit status) with SIGTERM raising ``Terminated``; on Ctrl-C or SIGTERM print
    ``interrupted: <message>`` as the one line and return 130 or 143."""
    old = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated)}
    try:
        return work()
    except (KeyboardInterrupt, Terminated) as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not turn the one line into a traceback
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"interrupted: {message}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _stop_worker(signum, frame):
    from toy_models.run_store import discard_active

    discard_active()
    os._exit(EXIT_TERMINATED)


def worker_signals() -> None:
    """In a worker process: ignore Ctrl-C (the driver decides), and on SIGTERM remove the partial folders being
    written and exit at once with status 143."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
