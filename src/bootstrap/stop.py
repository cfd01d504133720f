"""Stop requests: a signal that ends the boot is recorded, never raised from its
handler; every loop and stage of the boot asks :func:`check`.

The program installs the handler first of all (:func:`install`, from
``bootstrap.__main__`` before anything heavy is imported), so a SIGTERM is caught from
the first moment cloudboot's own code runs, wherever the main thread then is: a driver
call, a sleep, a log write, a finalizer. A handler that raised would land its exception
at an arbitrary point (inside a library's cleanup, say) and could be swallowed there;
a record cannot be lost. The waits of the boot are sliced (:data:`TICK`) or run the
blocking call in a worker thread (:func:`call`), so a recorded signal ends the boot
within a tick.

This module imports nothing but the standard library's ``signal``, ``threading`` and
``time``: it must be cheap enough to load before everything else.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

ENDING = (signal.SIGTERM, signal.SIGINT)
"""The signals that always end the boot; ``CLOUDBOOT_STOP_SIGNALS`` may add others."""

TICK = 0.05
"""Seconds between two looks at the record while waiting: the longest a recorded
signal waits to be acted on."""

_requested: list[int] = []
_own: set[int] = set()
_exit_at_once = [False]


def _record(signum: int, _frame: object) -> None:
    # Only the first counts: the boot ends with 128 + the first signal's number.
    if not _requested:
        _requested.append(signum)
    if _exit_at_once[0]:
        # Still importing: nothing has been written or started, so nothing needs an
        # orderly end, and an exit now saves the rest of the imports.
        raise SystemExit(128 + signum)


def exit_at_once(on: bool) -> None:
    """While on, a recorded signal also raises ``SystemExit(128 + n)`` at once: for the
    program's imports, before the boot has done anything (``bootstrap.__main__``)."""
    _exit_at_once[0] = on


def install(signums: Iterable[int] = ENDING) -> dict[int, Any]:
    """Record ``signums`` from now on instead of their previous handling; returns the
    previous handlers. Unblocks them too: a launcher that blocked them across its
    ``exec`` (so that a signal sent to a PID 1 in the meantime stays pending instead of
    being dropped) has them delivered now. Outside the main thread nothing changes
    (Python runs handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    wanted = tuple(signums)
    previous = {signum: signal.signal(signum, _record) for signum in wanted}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)
    return previous


def installed(signum: int) -> bool:
    """Whether ``signum`` is recorded by this module right now."""
    return signal.getsignal(signum) is _record


@contextmanager
def handled(extra: Iterable[int] = ()) -> Iterator[None]:
    """Within the block, :data:`ENDING` and ``extra`` are recorded; for the library's
    entry points (``migrate``, ``boot``, ``wait_only``). What the program installed
    already stays; whatever this block installed is put back afterwards, and the record
    cleared, so that a library caller's own handling comes back."""
    wanted = [s for s in (*ENDING, *extra) if not installed(s)]
    previous = install(wanted) if wanted else {}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if previous and not any(installed(s) for s in ENDING):
            _requested.clear()


def requested() -> int | None:
    """The number of the signal that asked the boot to end, or ``None``."""
    return _requested[0] if _requested else None


def check() -> None:
    """Raise :class:`~bootstrap.errors.Interrupted` if a signal asked the boot to end.

    While cloudboot is PID 1 it also reaps every child that has ended and is not one
    of its own (:func:`own`): orphans of the container come to PID 1, and nobody else
    would reap them."""
    if os.getpid() == 1:
        reap_orphans()
    if _requested:
        from .errors import Interrupted  # noqa: PLC0415 - kept out of the early import

        raise Interrupted(_requested[0])


def own(pid: int) -> None:
    """``pid`` is a child whose status its owner waits for: never reaped as an orphan."""
    _own.add(pid)


def disown(pid: int) -> None:
    _own.discard(pid)


def reap_orphans() -> list[int]:
    """Reap the children that have ended and are not :func:`own`; their PIDs.

    ``waitid`` with ``WNOWAIT`` looks without reaping, so that the status of a child of
    our own stays for its owner (and ``/proc`` need not be this namespace's)."""
    reaped: list[int] = []
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if ended is None or ended.si_pid in _own:
            return reaped
        os.waitpid(ended.si_pid, 0)
        reaped.append(ended.si_pid)


def sleep(seconds: float) -> None:
    """Sleep ``seconds``, or less: :func:`check` every :data:`TICK`."""
    end = time.monotonic() + seconds
    while True:
        check()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, TICK))


def call(function: Callable[[], T], *, discard: Callable[[T], None] | None = None) -> T:
    """``function()``'s result, computed in a worker thread while this thread keeps
    checking the record: a driver call that blocks (a connect to a host that drops
    packets, a lock wait) cannot hold a signal back. On a signal the worker is left to
    finish on its own and ``discard`` is given its result (to close a connection
    nobody will use). Outside the main thread, ``function`` runs right here."""
    if threading.current_thread() is not threading.main_thread():
        return function()
    check()
    guard = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "outcome": None}
    done = threading.Event()

    def work() -> None:
        # The signals are the main thread's to handle.
        signal.pthread_sigmask(signal.SIG_BLOCK, ENDING)
        try:
            outcome: tuple[bool, Any] = (True, function())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome = (False, exc)
        with guard:
            state["outcome"] = outcome
            dropped = state["abandoned"]
        done.set()
        if dropped:
            _discard(outcome, discard)

    worker = threading.Thread(target=work, name="cloudboot-call", daemon=True)
    worker.start()
    try:
        while not done.wait(TICK):
            check()
    except BaseException:
        with guard:
            state["abandoned"] = True
            outcome = state["outcome"]
        if outcome is not None:
            _discard(outcome, discard)
        raise
    ok, value = state["outcome"]
    if not ok:
        raise value
    result: T = value
    return result


def _discard(outcome: tuple[bool, Any], discard: Callable[[Any], None] | None) -> None:
    ok, value = outcome
    if ok and discard is not None:
        discard(value)
