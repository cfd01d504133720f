"""The exceptions cloudboot raises, one root, each leaf carrying its sysexits code.

The library raises these; only the CLI turns them into an exit. No message ever holds a
secret value: messages name the variable and the field instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class CloudbootError(Exception):
    """Root of every error cloudboot raises on purpose.

    ``hint`` says what to do; ``detail`` holds facts for a diagnosis (``cloudboot
    check`` shows them), never a secret.
    """

    exit_code = 1
    hint: str | None = None

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        self.detail: dict[str, Any] = dict(detail or {})


class UsageError(CloudbootError):
    """The command line is wrong (64)."""

    exit_code = 64


class ConfigError(CloudbootError):
    """Settings or credentials are missing, malformed or conflicting (78).

    Carries every problem found, so that a container reports them all in one go
    instead of crash-looping once per problem.
    """

    exit_code = 78

    def __init__(
        self,
        problems: Iterable[str],
        *,
        hint: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(text, hint=hint, detail=detail)


class UnavailableError(CloudbootError):
    """The database did not answer before the deadline, or cannot be reached (69)."""

    exit_code = 69


class HookError(CloudbootError):
    """A hook failed or timed out (70)."""

    exit_code = 70


class WriteError(CloudbootError):
    """An artifact could not be written (73)."""

    exit_code = 73


class RefusedError(CloudbootError):
    """Authentication or TLS verification failed (77)."""

    exit_code = 77


class ProgramError(CloudbootError):
    """A program cloudboot execs (the server, a SQL client) cannot be started: 127 when
    it is not found, 126 when it is found but cannot be run (the codes shells use), 71
    when the system lacks what starting it needs."""

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


class LockLostError(UnavailableError):
    """The database session holding a hook's lock was lost while the hook ran (69): the
    hook was stopped and is not recorded as done."""

    def __init__(self, hook: str, reason: str) -> None:
        super().__init__(
            f"the database session holding the lock for hook {hook!r} was lost while the "
            f"hook ran ({reason}); the hook was stopped and is not recorded as done",
            hint="another task may hold the lock now and run the hook; this task must "
            "start again (the server, a failover or the network ended the session)",
        )
        self.hook = hook


class LockTimeoutError(CloudbootError):
    """Another task held the hooks' lock longer than ``CLOUDBOOT_LOCK_TIMEOUT`` (75,
    EX_TEMPFAIL: try again later)."""

    exit_code = 75


class Interrupted(CloudbootError):
    """The boot was ended by a signal (128 + n)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum
