"""Ctrl-C for long study runs: stop at the next step or chunk boundary, never inside XLA.

A ``KeyboardInterrupt`` raised while XLA is computing or compiling can leave the runtime
in a state that crashes the process at exit. Inside :func:`deferred`, SIGINT only sets a
flag; the engine and the volume estimate run their XLA work in chunks and call
:func:`check` between chunks (after the chunk's results are on the host), which raises
:class:`Interrupted` there. Outside :func:`deferred` (a notebook, a user's script),
nothing changes: :func:`check` never raises and Ctrl-C behaves as usual.

The signal handler is process-wide state by nature; this module is its only owner.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["Interrupted", "check", "deferred", "requested"]


class Interrupted(Exception):
    """Raised by :func:`check` at a step or chunk boundary after Ctrl-C (SIGINT)."""


STEP_NOTICE = "interrupt: stopping at the next step boundary (saving what is finished)"


class _Flag:
    armed = 0
    requested = False
    notice = STEP_NOTICE


_FLAG = _Flag()


def _handler(signum, frame) -> None:  # runs in the main thread, between bytecodes
    if not _FLAG.requested:
        print(f"\n{_FLAG.notice}", file=sys.stderr, flush=True)
    _FLAG.requested = True


@contextlib.contextmanager
def deferred(notice: str = STEP_NOTICE) -> Iterator[None]:
    """Within this block SIGINT sets a flag that :func:`check` turns into
    :class:`Interrupted` (printing ``notice`` once, on the first Ctrl-C). Only the main
    thread can install a signal handler; elsewhere this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    _FLAG.requested = False
    _FLAG.notice = notice
    _FLAG.armed += 1
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        _FLAG.armed -= 1
        signal.signal(signal.SIGINT, previous)
        _FLAG.requested = False


def requested() -> bool:
    """Whether Ctrl-C was pressed inside :func:`deferred`."""
    return _FLAG.armed > 0 and _FLAG.requested


def check() -> None:
    """Raises :class:`Interrupted` if Ctrl-C was pressed inside :func:`deferred`."""
    if requested():
        raise Interrupted("interrupted by Ctrl-C")
