"""``cloudboot [--] CMD``: the boot for the image's server command, and at once for any
other command, the way docker-library and Bitnami entrypoints run their setup only for
the server.

The server command is the ``server`` setting (``CLOUDBOOT_SERVER``, or ``server = [...]``
in the image's TOML file). A command that starts with it (its program by path or by
name, then its arguments) gets the whole boot: wait, ensure the database, hooks, exec.
Any other command (``sh``, ``bash``, ``mix``, ``wp``, a one-off task) gets the rendered
variables and files, then is exec'd at once. No command, or one that starts with ``-``,
means the server command (with those words after it). Without the setting, every
command boots except an interactive shell (``sh``, ``bash -l``: a shell without a
script; ``sh -c 'exec server'``, Docker's shell-form ``CMD``, is a server).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NoReturn

from . import events
from .errors import ConfigError, UsageError
from .logs import get_logger

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "fish", "busybox"})
_INTERACTIVE_FLAGS = frozenset({"-i", "-l", "--login", "-il", "-li"})


def is_interactive_shell(cmd: Sequence[str]) -> bool:
    """A shell started without a script to run: someone wants a prompt."""
    if os.path.basename(cmd[0]) not in SHELLS:
        return False
    arguments = cmd[2:] if os.path.basename(cmd[0]) == "busybox" else cmd[1:]
    return all(word in _INTERACTIVE_FLAGS for word in arguments)


def _same_word(given: str, server: str) -> bool:
    # A program or script named by another path to the same name (an image's
    # /usr/local/bin/x and a mapped copy, a relative and an absolute path) is the same.
    return given == server or (
        "/" in given + server and os.path.basename(given) == os.path.basename(server)
    )


def server_command(cmd: Sequence[str], server: Sequence[str] | None) -> list[str]:
    """The command to run: ``cmd``, or the server command when ``cmd`` is empty or
    begins with an option (``docker run IMAGE --flag``)."""
    if cmd and not cmd[0].startswith("-"):
        return list(cmd)
    if not server:
        if not cmd:
            raise UsageError("no command to run: give the server command, or set CLOUDBOOT_SERVER")
        raise UsageError(
            f"unknown option {cmd[0]}: options after cloudboot's go to the server command, "
            "and CLOUDBOOT_SERVER is not set"
        )
    return [*server, *cmd]


def is_server(cmd: Sequence[str], server: Sequence[str] | None) -> bool:
    """Whether ``cmd`` is the server command (so the boot runs before it)."""
    if not server:
        return not is_interactive_shell(cmd)
    if len(cmd) < len(server):
        return False
    return all(_same_word(given, word) for given, word in zip(cmd, server, strict=False))


def run(environ: Mapping[str, str], cmd: Sequence[str]) -> NoReturn:
    """Boot and exec the server, or exec another command at once (see the module)."""
    from .lifecycle import boot, exec_direct, exec_plain, prepare  # noqa: PLC0415

    try:
        prepared = prepare(environ)  # loaded once: the boot and the direct exec take it
    except ConfigError as exc:
        exec_plain(environ, _unconfigured_shell(environ, cmd, exc))
    server = prepared.config.settings.server
    command = server_command(cmd, server)
    if is_server(command, server):
        boot(environ, command, prepared)
    exec_direct(environ, command, prepared)


def _unconfigured_shell(
    environ: Mapping[str, str], cmd: Sequence[str], error: ConfigError
) -> list[str]:
    """The command to give although the configuration is broken: an interactive shell
    that is not the server command, how an operator gets in to mend it (without the
    rendered variables and files; the log says why). Anything else raises ``error``."""
    from .settings import load_settings  # noqa: PLC0415

    settings, _ = load_settings(environ)
    server = settings.server if settings is not None else None
    try:
        command = server_command(cmd, server)
    except UsageError:
        raise error from None  # the configuration is the problem to report
    if is_server(command, server) or not is_interactive_shell(command):
        raise error
    get_logger().warning(
        events.EXEC_UNCONFIGURED, program=command[0], problems=list(error.problems)
    )
    return command
