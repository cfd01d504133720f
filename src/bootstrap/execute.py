"""The last stage: replace this process with another program, keeping its PID."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from . import stop
from .errors import ProgramError

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def _last_look(stopping: Sequence[int]) -> None:
    """The last look at the stop record before the exec.

    With the signals blocked, a handler still pending runs (``pthread_sigmask`` runs
    it) and the record is read; one that comes later stays pending in the kernel.
    Unless cloudboot is PID 1 their disposition then goes back to the default before
    they are unblocked: from that instant a stop signal kills cloudboot before the exec
    (exit 128 + n) or, once the exec is done, reaches the server with the server's
    own disposition, and is never lost. A PID 1 cannot do that (the kernel drops a
    default-handled signal sent to it), so it keeps its handler and looks once more:
    a signal in the microseconds between that look and the exec is lost, which is why
    the images run cloudboot behind an init (README, "Signals").
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        stop.check()
        if os.getpid() != 1:
            for signum in stopping:
                signal.signal(signum, signal.SIG_DFL)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping)
    stop.check()


def exec_program(
    argv: Sequence[str],
    environment: Mapping[str, str],
    *,
    what: str,
    path: str | None = None,
    hint: str | None = None,
    stopping: Sequence[int] = (),
) -> NoReturn:
    """Replace this process with ``path`` (default: ``argv[0]`` looked up on the PATH of
    ``environment``), run as ``argv`` with ``environment``.

    Raises :class:`ProgramError`: 127 when the program is not found, 126 when it cannot
    be run (the codes shells use); ``what`` names it in the message. With ``stopping``
    (the boot's stop signals), :class:`~bootstrap.errors.Interrupted` instead of the
    exec when one of them has come, up to the last moment (:func:`_last_look`).
    """
    program = path or argv[0]
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ for itself, and an exec keeps ignored signals
    # ignored: the program must start with the defaults (`... | head` ends quietly).
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    if stopping:
        _last_look(stopping)
    try:
        os.execvpe(program, list(argv), dict(environment))  # noqa: S606 - argv, no shell
    except OSError as exc:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's own again, to report
        if stopping:
            stop.install(stopping)
        if isinstance(exc, FileNotFoundError):
            raise ProgramError(
                f"the {what} {program!r} was not found", exit_code=EXIT_NOT_FOUND, hint=hint
            ) from None
        raise ProgramError(
            f"the {what} {program!r} cannot be executed: {exc.strerror}",
            exit_code=EXIT_NOT_EXECUTABLE,
            hint="check that it is an executable file",
        ) from None
