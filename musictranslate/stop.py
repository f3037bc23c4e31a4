"""Ending cleanly when asked to stop: SIGTERM and SIGHUP are handled as Ctrl-C is.

A ``kill``, a closed terminal or a job scheduler's time limit must leave what Ctrl-C leaves:
generation workers stopped, temp files and staging folders removed, the previous outputs and
checkpoints as they were, one line on stderr. So the signal is raised in the main thread as a
``KeyboardInterrupt`` (``Stopped``), and the ``finally`` blocks that already clean up after Ctrl-C
run for it too; the exit status is the shell's 128 + signal number (143, 129). A forked worker
must not outlive its parent even when the parent is killed outright (SIGKILL, out of memory),
or it would sit blocked on a pipe holding its share of memory forever: ``die_with_parent``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
"""SIGHUP does not exist on Windows."""
INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C
_PR_SET_PDEATHSIG = 1


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread was, so cleanup runs as after Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []


def _raise_stopped(signum: int, frame: object) -> None:
    for number in STOP_SIGNALS:  # a second signal must not cut the cleanup short
        signal.signal(number, signal.SIG_IGN)
    _received.append(signum)
    raise Stopped(signum)


def raise_if_stopped() -> None:
    """Raise ``Stopped`` again when a stop signal arrived where Python swallows exceptions (a
    fork's after-fork hooks, a finaliser): the loops that wait on workers call this, and so does
    the command line before it reports success."""
    if _received:
        raise Stopped(_received[0])


def stop_on_signals() -> None:
    """Install the handlers (the command line does, once per process, in its main thread)."""
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, _raise_stopped)


def exit_status(exc: KeyboardInterrupt) -> int:
    return 128 + exc.signum if isinstance(exc, Stopped) else INTERRUPTED


def describe(exc: KeyboardInterrupt) -> str:
    return f"stopped by {exc.args[0]}" if isinstance(exc, Stopped) else "interrupted"


@contextmanager
def held_during_fork() -> Iterator[None]:
    """Hold stop signals back while a worker is forked: one arriving inside the fork's
    after-fork hooks would be printed as "Exception ignored" and lost. It arrives when they end."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def in_worker(parent: int) -> None:
    """In a forked worker: Ctrl-C, SIGTERM and SIGHUP are the parent's to handle (it kills the
    workers), and the worker dies when the parent does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held back by the fork
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent ends; exit now if it already has."""
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):  # a libc without prctl: the check below remains
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
