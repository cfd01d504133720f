"""Run the hooks: commands before the server, in order, each in a process group of its
own so that a timeout or a signal ends the whole group (a shell and what it started).

Locking and the once-per-release record are handed in (``lock``), so this module knows
processes, not databases.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from . import events
from .errors import HookError, Interrupted
from .logs import get_logger
from .settings import Hook

TIMEOUT_GRACE = 5.0
"""Seconds a timed-out hook's group gets between SIGTERM and SIGKILL."""

SIGNAL_GRACE = 0.5
"""Seconds a hook's group gets after a forwarded signal: the boot must end within one."""


class Lease(Protocol):
    """What a held hook lock offers (:class:`bootstrap.database.Lease`)."""

    def done(self) -> bool: ...

    def record(self) -> None: ...


LockFactory = Callable[[Hook, Any], AbstractContextManager[Lease]]
"""``lock(hook, adopt)``: the lock for ``hook``; ``adopt`` is an open connection the
first locked hook may take over (the wait's), else ``None``."""


def run_hooks(
    hooks: Sequence[Hook],
    environment: Mapping[str, str],
    lock: LockFactory,
    *,
    adopt: object = None,
) -> None:
    """Run ``hooks`` in order with ``environment``; stop at the first failure.

    A hook with ``lock`` runs inside ``lock(hook, adopt)`` (``adopt`` only for the first
    of them); when the lease says it is done (it completed for this release), it is
    skipped, and after it succeeds it is recorded. Raises :class:`HookError` (70) or
    :class:`Interrupted`.
    """
    log = get_logger()
    for hook in hooks:
        if not hook.lock:
            run_hook(hook, environment)
            continue
        with lock(hook, adopt) as lease:
            adopt = None
            if lease.done():
                log.info(events.HOOK_SKIPPED, hook=hook.name, why="done for this release")
                continue
            run_hook(hook, environment)
            lease.record()


def run_hook(hook: Hook, environment: Mapping[str, str]) -> None:
    """Run one hook to completion in a new session (its own process group).

    stdin is ``/dev/null`` (a prompt must fail, not hang a boot); stdout and stderr are
    ours. Raises :class:`HookError` when it cannot start, exits non-zero, dies by a
    signal or outlives ``hook.timeout``. On any exception while it runs (a signal that
    ends the boot) its group gets the same signal, then SIGKILL after
    :data:`SIGNAL_GRACE`. Logs ``cloudboot.hook.start`` and ``cloudboot.hook.done``
    with the hook's name and program, never its arguments.
    """
    log = get_logger()
    program = hook.argv[0]
    log.info(events.HOOK_START, hook=hook.name, program=program, timeout_s=hook.timeout)
    started = time.monotonic()
    with _signals_held() as pending:
        try:
            process = subprocess.Popen(
                hook.argv,
                env=dict(environment),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise HookError(
                f"hook {hook.name!r} cannot start {program}: {exc.strerror}",
                hint="is the program installed and on PATH in this image?",
            ) from None
    try:
        for signum in pending:
            signal.raise_signal(signum)  # now that there is a group to pass it on to
        status = process.wait(timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        end_group(process, signal.SIGTERM, TIMEOUT_GRACE)
        raise HookError(
            f"hook {hook.name!r} did not finish within {hook.timeout:g} s and was stopped"
        ) from None
    except BaseException as exc:
        end_group(process, _signal_of(exc), SIGNAL_GRACE)
        raise
    elapsed = round(time.monotonic() - started, 3)
    if status != 0:
        what = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
        raise HookError(f"hook {hook.name!r} ({program}) {what} after {elapsed} s")
    log.info(events.HOOK_DONE, hook=hook.name, program=program, elapsed_s=elapsed)


_HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Record SIGTERM and SIGINT instead of handling them within the block; the caller
    replays what the yielded list holds once it can act on it.

    A signal handled while ``Popen`` runs (the child may already be running and
    visible) would leave a hook group that nobody ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _f: pending.append(signum)) for s in _HELD_SIGNALS
    }
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_of(exc: BaseException) -> int:
    if isinstance(exc, Interrupted):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    return signal.SIGTERM


def end_group(process: subprocess.Popen[bytes], signum: int, grace: float) -> None:
    """Send ``signum`` to ``process``'s group, wait up to ``grace`` seconds for the
    leader, then SIGKILL whatever is left of the group, and reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    finally:  # even when a signal ends the grace early
        # Members that outlive their leader (a shell's children) still form the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
