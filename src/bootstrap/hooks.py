"""Run the hooks: commands before the server, in order, each below a keeper process
(:mod:`bootstrap.keeper`) so that a timeout, a signal, a lost lock or cloudboot's own
death ends the hook and everything it started.

Locking and the once-per-release record are handed in (``lock``), so this module knows
processes, not databases.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from . import events, stop
from .errors import HookError, LockLostError
from .logs import get_logger
from .settings import Hook

TIMEOUT_GRACE = 5.0
"""Seconds a timed-out hook gets between SIGTERM and SIGKILL."""

SIGNAL_GRACE = 0.5
"""Seconds a hook gets after a forwarded signal: the boot must end within one."""

LOCK_CHECK_INTERVAL = 0.1
"""Seconds between two looks at the lock's session while a locked hook runs."""

KEEPER = Path(__file__).with_name("keeper.py")
# How often the keeper's end is looked for where there is no pidfd to wait on (seconds).
POLL = 0.01


class Lease(Protocol):
    """What a held hook lock offers (:class:`bootstrap.database.Lease`)."""

    def done(self) -> bool: ...

    def record(self) -> None: ...

    def hand_over(self) -> None:
        """Called before the hook runs: the pause after taking a lock from another task."""
        ...

    def lost(self) -> str | None:
        """Why the lock is gone, or ``None`` while it is held; cheap, called often."""
        ...


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
    skipped, and after it succeeds it is recorded. While it runs the lease is watched:
    when the lock is lost the hook is stopped at once and nothing is recorded. Raises
    :class:`HookError` (70), :class:`LockLostError` (69) or :class:`Interrupted`.
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
            lease.hand_over()
            run_hook(hook, environment, lost=lease.lost)
            lease.record()


def run_hook(
    hook: Hook,
    environment: Mapping[str, str],
    *,
    lost: Callable[[], str | None] | None = None,
) -> None:
    """Run one hook to completion below a keeper (:mod:`bootstrap.keeper`).

    stdin is ``/dev/null`` (a prompt must fail, not hang a boot); stdout and stderr are
    ours. What the hook leaves running when it exits is ended. Raises
    :class:`HookError` when it cannot start, exits non-zero, dies by a signal or
    outlives ``hook.timeout``; :class:`LockLostError` when ``lost()`` says the lock is
    gone (the hook is killed at once); :class:`Interrupted` on a stop signal (the hook
    gets it too, then SIGKILL after :data:`SIGNAL_GRACE`). Logs ``cloudboot.hook.start``
    and ``cloudboot.hook.done`` with the hook's name and program, never its arguments.
    """
    log = get_logger()
    program = hook.argv[0]
    log.info(events.HOOK_START, hook=hook.name, program=program, timeout_s=hook.timeout)
    started = time.monotonic()
    kept = KeptHook.start(hook.argv, environment)
    try:
        status = _supervise(kept, hook, started, lost)
    except BaseException:
        kept.end(signal_of_stop(), SIGNAL_GRACE)
        raise
    finally:
        kept.close()
    elapsed = round(time.monotonic() - started, 3)
    if kept.start_error is not None:
        raise HookError(
            f"hook {hook.name!r} cannot start {program}: {os.strerror(kept.start_error)}",
            hint="is the program installed and on PATH in this image?",
        )
    if status != 0:
        what = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
        raise HookError(f"hook {hook.name!r} ({program}) {what} after {elapsed} s")
    log.info(events.HOOK_DONE, hook=hook.name, program=program, elapsed_s=elapsed)


def _supervise(
    kept: KeptHook, hook: Hook, started: float, lost: Callable[[], str | None] | None
) -> int:
    """Wait for the hook, looking at the stop record, the timeout and the lock."""
    next_look = started
    while True:
        status = kept.wait(stop.TICK)
        if status is not None:
            return status
        stop.check()
        now = time.monotonic()
        if hook.timeout is not None and now - started > hook.timeout:
            kept.end(15, TIMEOUT_GRACE)
            raise HookError(
                f"hook {hook.name!r} did not finish within {hook.timeout:g} s and was stopped"
            )
        if lost is not None and now >= next_look:
            next_look = now + LOCK_CHECK_INTERVAL
            reason = lost()
            if reason is not None:
                kept.end(9, 0)
                get_logger().warning(
                    events.HOOK_LOCK_LOST,
                    hook=hook.name,
                    reason=reason,
                    elapsed_s=round(now - started, 3),
                )
                raise LockLostError(hook.name, reason)


def signal_of_stop() -> int:
    """The signal to pass on to a hook that is being stopped by an exception."""
    return stop.requested() or 15


class KeptHook:
    """A hook process below its keeper: the keeper's process, its control pipe (our end
    closing means "kill everything now") and its report pipe."""

    def __init__(self, process: subprocess.Popen[bytes], control: int, report: int) -> None:
        self.process = process
        self.control: int | None = control
        self.report = report
        self.start_error: int | None = None
        # Readable once the keeper has exited. None where pidfd_open is missing (Linux
        # before 5.3) or refused (a seccomp profile that predates it): then polled.
        self.pidfd: int | None = None
        with contextlib.suppress(OSError):
            self.pidfd = os.pidfd_open(process.pid)

    @classmethod
    def start(cls, argv: Sequence[str], environment: Mapping[str, str]) -> KeptHook:
        control_r, control_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    str(KEEPER),
                    str(control_r),
                    str(report_w),
                    "--",
                    *argv,
                ],
                env=dict(environment),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(control_r, report_w),
            )
        except OSError as exc:
            os.close(control_w)
            os.close(report_r)
            raise HookError(f"the hook keeper cannot start: {exc.strerror}") from None
        finally:
            os.close(control_r)
            os.close(report_w)
        stop.own(process.pid)
        return cls(process, control_w, report_r)

    def wait(self, timeout: float) -> int | None:
        """The hook's status (as ``Popen.returncode``) once the keeper has exited,
        waiting up to ``timeout`` seconds; ``None`` while it runs."""
        if self.pidfd is not None:
            if not select.select([self.pidfd], [], [], timeout)[0]:
                return None
        else:
            deadline = time.monotonic() + timeout
            while self.process.poll() is None:
                if (left := deadline - time.monotonic()) <= 0:
                    return None
                time.sleep(min(left, POLL))
        status = self.process.wait()
        said = os.read(self.report, 64).decode()
        if said.startswith("error "):
            self.start_error = int(said.split()[1])
            return 0
        return status

    def end(self, signum: int, grace: float) -> None:
        """Ask the keeper to pass ``signum`` to everything below it and SIGKILL all of it
        after ``grace`` seconds; wait for that (a little longer at most), then SIGKILL
        the keeper's own group should it not have exited."""
        if self.process.returncode is not None:
            return
        if self.control is not None:
            with contextlib.suppress(OSError):  # the keeper has just gone
                os.write(self.control, f"stop {signum} {grace}\n".encode())
        try:
            self.process.wait(timeout=grace + 1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()

    def close(self) -> None:
        if self.control is not None:
            os.close(self.control)  # the keeper kills whatever is still below it
            self.control = None
        os.close(self.report)
        if self.pidfd is not None:
            os.close(self.pidfd)
        if self.process.returncode is None:
            self.process.wait()
        stop.disown(self.process.pid)
