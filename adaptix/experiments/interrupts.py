"""Stopping a run cleanly: SIGTERM treated as Ctrl-C, and the error that says what was kept and how to go on."""

from __future__ import annotations

import contextlib
import signal
import threading


class RunInterrupted(Exception):
    """The run was stopped by SIGINT or SIGTERM after what finished was saved; ``str()`` says where and how to go on.

    ``signal`` is the number of the signal that stopped it (the command line exits with ``128 + signal``).
    """

    def __init__(self, message: str, signal_number: int = signal.SIGINT):
        super().__init__(message)
        self.signal = int(signal_number)


class _Stop(KeyboardInterrupt):
    """The ``KeyboardInterrupt`` that SIGTERM raises, remembering which signal it was."""

    signal = signal.SIGTERM


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind a ``KeyboardInterrupt``: SIGTERM when :func:`sigterm_interrupts` raised it, else SIGINT."""
    return getattr(interrupt, "signal", signal.SIGINT)


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM (a scheduler's stop, ``kill``) raises ``KeyboardInterrupt`` as Ctrl-C does, in the main thread.

    Elsewhere (a worker thread cannot install signal handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
