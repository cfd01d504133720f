"""The hook keeper: a small process between cloudboot and a hook that makes sure the
hook, and everything it started, ends with cloudboot.

cloudboot runs it as a script (``python -I -S keeper.py CONTROL_FD REPORT_FD -- ARGV``;
standard library only, no import of ``bootstrap``: about 10 ms). The keeper

- is a child subreaper (``PR_SET_CHILD_SUBREAPER``): whatever the hook starts and
  leaves (a daemon that changed its session, a zombie's parent that died) is
  re-parented to it, so it can end and reap all of it;
- starts the hook with ``PR_SET_PDEATHSIG`` = SIGKILL, stdin from ``/dev/null``;
- reads the control pipe from cloudboot: end of file means cloudboot died (SIGKILL
  included), and everything below the keeper is killed at once; a line ``stop SIG
  GRACE`` sends SIG to every process below it, then SIGKILL after GRACE seconds;
- when the hook exits, ends what it left: SIGTERM to every process still below the
  keeper, SIGKILL after :data:`LEFTOVER_GRACE` seconds, all of it reaped;
- exits as the hook did (its code, or death by its signal), after writing ``error
  ERRNO`` to the report pipe if the hook could not be started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LEFTOVER_GRACE = 1.0
TICK = 0.05
EXIT_CANNOT_START = 127


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def descendants() -> list[int]:
    """Every process below this one, parents before their children, as PIDs of this
    process's own PID namespace (``/proc`` may be an outer namespace's: a test's
    ``unshare --pid`` without a new ``/proc``)."""
    level = len(_ns_pids("self")) - 1
    found: list[int] = []
    todo = ["self"]
    while todo:
        proc = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{proc}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{proc}/task/{task}/children") as children:
                    kids = children.read().split()
            except OSError:
                continue
            for kid in kids:
                ours = _ns_pids(kid)
                if len(ours) > level:
                    found.append(ours[level])
                    todo.append(kid)
    return found


def _ns_pids(proc: str) -> list[int]:
    """The PIDs of ``/proc/PROC`` in each PID namespace it is in, outermost first."""
    try:
        with open(f"/proc/{proc}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return [int(word) for word in line.split()[1:]]
    except OSError:
        return []
    return [int(proc)] if proc.isdigit() else [os.getpid()]


def signal_all(signum: int) -> None:
    for pid in descendants():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def kill_all() -> None:
    """SIGKILL everything below, until nothing is left (the children of a killed
    process come to us, the subreaper, and are found on the next round)."""
    while pids := descendants():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap()
        time.sleep(0.005)
    reap()


def reap() -> dict[int, int]:
    """Reap every child that has ended; their statuses by PID."""
    ended: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def _start(argv: list[str], report: int) -> int | None:
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        os.write(report, f"error {exc.errno}\n".encode())
        return None
    errors_r, errors_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the hook
        try:
            os.close(errors_r)
            os.dup2(devnull, 0)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            os.execvp(argv[0], argv)  # noqa: S606 - the hook's argv, no shell
        except OSError as exc:
            os.write(errors_w, str(exc.errno or 0).encode())
        os._exit(EXIT_CANNOT_START)
    os.close(errors_w)
    os.close(devnull)
    failed = os.read(errors_r, 32)
    os.close(errors_r)
    if failed:
        os.waitpid(pid, 0)
        os.write(report, f"error {int(failed)}\n".encode())
        return None
    return pid


def _exit_as(status: int) -> None:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _end_with_grace(hook: int, signum: int, grace: float) -> int | None:
    """``signum`` to everything below; SIGKILL for all after ``grace`` seconds or as
    soon as the hook has gone. The hook's status if it was seen."""
    signal_all(signum)
    deadline = time.monotonic() + grace
    status = None
    while time.monotonic() < deadline:
        ended = reap()
        if hook in ended:
            status = ended[hook]
            break
        time.sleep(TICK / 5)
    kill_all()
    return status


def main(args: list[str]) -> None:
    control, report = int(args[0]), int(args[1])
    argv = args[3:]
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    for fd in (control, report):
        os.set_inheritable(fd, False)
    # Only cloudboot ends us, through the control pipe (its end of file included).
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    hook = _start(argv, report)
    if hook is None:
        os._exit(EXIT_CANNOT_START)
    status: int | None = None
    pending = b""
    # The hook's end wakes the wait at once (its pidfd turns readable): the lock is
    # handed on without a tick's delay. Other children are reaped on the tick, and so is
    # the hook where pidfd_open is missing (Linux before 5.3) or refused (a seccomp
    # profile that predates it).
    watched = [control]
    with contextlib.suppress(OSError):
        watched.append(os.pidfd_open(hook))
    while status is None:
        ready, _, _ = select.select(watched, [], [], TICK)
        ended = reap()
        if hook in ended:
            status = ended[hook]
            break
        if control not in ready:
            continue
        data = os.read(control, 256)
        if not data:  # cloudboot is gone, and with it the lock: no grace
            kill_all()
            os._exit(137)
        pending += data
        if b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            _word, number, grace = line.decode().split()
            status = _end_with_grace(hook, int(number), float(grace))
            if status is None:
                status = signal.SIGKILL  # a raw status: killed by SIGKILL
    # The hook is done: what it left is ended too (README, "Hooks").
    if descendants():
        signal_all(signal.SIGTERM)
        deadline = time.monotonic() + LEFTOVER_GRACE
        while descendants() and time.monotonic() < deadline:
            reap()
            time.sleep(TICK / 5)
        kill_all()
    _exit_as(status)


if __name__ == "__main__":
    main(sys.argv[1:])
