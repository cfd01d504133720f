"""The last stage: replace this process with another program, keeping its PID."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from .errors import ProgramError

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def exec_program(
    argv: Sequence[str],
    environment: Mapping[str, str],
    *,
    what: str,
    path: str | None = None,
    hint: str | None = None,
) -> NoReturn:
    """Replace this process with ``path`` (default: ``argv[0]`` looked up on the PATH of
    ``environment``), run as ``argv`` with ``environment``.

    Raises :class:`ProgramError`: 127 when the program is not found, 126 when it cannot
    be run (the codes shells use); ``what`` names it in the message.
    """
    program = path or argv[0]
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ for itself, and an exec keeps ignored signals
    # ignored: the program must start with the defaults (`... | head` ends quietly).
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvpe(program, list(argv), dict(environment))  # noqa: S606 - argv, no shell
    except OSError as exc:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's own again, to report
        if isinstance(exc, FileNotFoundError):
            raise ProgramError(
                f"the {what} {program!r} was not found", exit_code=EXIT_NOT_FOUND, hint=hint
            ) from None
        raise ProgramError(
            f"the {what} {program!r} cannot be executed: {exc.strerror}",
            exit_code=EXIT_NOT_EXECUTABLE,
            hint="check that it is an executable file",
        ) from None
