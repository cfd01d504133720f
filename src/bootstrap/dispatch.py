"""``cloudboot [--] CMD``: the boot for the image's server command, and at once for any
other command, the way docker-library and Bitnami entrypoints run their setup only for
the server.

The server command is the ``server`` setting (``CLOUDBOOT_SERVER``, or ``server = [...]``
in the image's TOML file). A command that starts with it (its program by path or by
name, then its arguments) gets the whole boot: wait, ensure the database, hooks, exec.
Any other command (``sh``, ``bash``, ``mix``, ``wp``, a one-off task) gets the rendered
variables and files, then is exec'd at once. No command, or one that starts with ``-``,
means the server command (with those words after it). Without the setting, every
command boots except an interactive shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NoReturn

from . import events
from .errors import ConfigError, UsageError
from .logs import get_logger

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "fish", "busybox"})
"""Programs that are never the server when no ``server`` is set: a shell in the image."""


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
        return os.path.basename(cmd[0]) not in SHELLS
    if len(cmd) < len(server):
        return False
    same_program = cmd[0] == server[0] or os.path.basename(cmd[0]) == os.path.basename(server[0])
    return same_program and list(cmd[1 : len(server)]) == list(server[1:])


def run(environ: Mapping[str, str], cmd: Sequence[str]) -> NoReturn:
    """Boot and exec the server, or exec another command at once (see the module)."""
    from .lifecycle import boot, exec_direct  # noqa: PLC0415 - the boot loads what it needs
    from .settings import load_settings  # noqa: PLC0415

    settings, _ = load_settings(environ)
    server = settings.server if settings is not None else None
    command = server_command(cmd, server)
    if is_server(command, server):
        boot(environ, command)
    try:
        exec_direct(environ, command)
    except ConfigError as exc:
        if os.path.basename(command[0]) not in SHELLS:
            raise
        # A shell is how an operator gets in to mend a broken configuration: give it,
        # without the rendered variables and files, and say why.
        get_logger().warning(
            events.EXEC_UNCONFIGURED, program=command[0], problems=list(exc.problems)
        )
        from .lifecycle import exec_plain  # noqa: PLC0415

        exec_plain(environ, command)
