"""The boot, stage by stage: load → render → write → wait → ensure the database →
hooks → exec. Each stage takes what the one before returned.

While cloudboot runs (it may be PID 1 in a container until it execs), SIGTERM and
SIGINT (and ``CLOUDBOOT_STOP_SIGNALS``) are recorded (:mod:`bootstrap.stop`) and every
stage acts on the record: the boot ends with :class:`Interrupted` (exit 128 + n) within
a second, a running hook gets the signal too, and the server is never exec'd after a
signal. After the exec the server has cloudboot's PID and handles its own signals.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from . import events, stop
from .config import Config, load
from .errors import ProgramError
from .execute import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, exec_program
from .logs import get_logger
from .rendering import Rendering, render
from .settings import Hook
from .writing import Planned, plan, write

if TYPE_CHECKING:
    from .hooks import Lease
    from .wait import Readiness


@dataclass(frozen=True)
class Prepared:
    """The configuration and its rendering, with the writes already planned."""

    config: Config
    rendering: Rendering
    planned: tuple[Planned, ...]

    def server_environment(self) -> dict[str, str]:
        """The environment the server is exec'd with: ours plus the rendered variables."""
        return {**self.config.environ, **self.rendering.environment}


def prepare(environ: Mapping[str, str]) -> Prepared:
    """Load and render everything and plan the writes; writes nothing."""
    config = load(environ)
    rendering = render(config)
    planned = tuple(plan(rendering.files, config.owner))
    _log_sources(config)
    return Prepared(config, rendering, planned)


def _log_sources(config: Config) -> None:
    target = config.target
    get_logger().info(
        events.SOURCES_FOUND,
        source=config.source.label,
        variables=list(config.source.variables),
        engine=target.engine,
        host=target.host,
        port=target.port,
        dbname=target.dbname,
    )


def write_artifacts(prepared: Prepared) -> None:
    """Write what :func:`prepare` planned, all or nothing, and log each artifact."""
    write(prepared.planned, prepared.config.owner)
    log = get_logger()
    for item in prepared.planned:
        log.info(
            events.RENDER_FILE,
            kind=item.artifact.kind,
            path=str(item.artifact.path),
            mode=f"{item.mode:04o}",
            action=item.action,
        )


def wait_only(environ: Mapping[str, str]) -> Readiness:
    """``cloudboot wait``: load, then wait until the database answers.

    Writes nothing and creates nothing. Raises what :func:`bootstrap.wait.wait_ready`
    raises (69, 77, 78), :class:`~bootstrap.errors.ConfigError` (78) or
    :class:`Interrupted`.
    """
    from .wait import wait_ready  # noqa: PLC0415 - tenacity and drivers load only here

    with stop.handled():
        stop.check()
        config = load(environ)
        _log_sources(config)
        with stop.handled(config.settings.stop_signal_numbers()):
            return wait_ready(config.target, create_missing=config.settings.create_database)


def migrate(environ: Mapping[str, str]) -> Prepared:
    """``cloudboot migrate`` and the boot up to the exec: prepare, write the artifacts,
    wait, create the database when missing (and allowed), run the hooks.

    Returns what was prepared. Every failure raises a
    :class:`~bootstrap.errors.CloudbootError` with its exit code; nothing after a
    failed stage runs.
    """
    with stop.handled():
        stop.check()
        prepared = prepare(environ)
        with stop.handled(prepared.config.settings.stop_signal_numbers()):
            _stages(prepared)
        return prepared


def boot(
    environ: Mapping[str, str], cmd: Sequence[str], prepared: Prepared | None = None
) -> NoReturn:
    """The boot: :func:`migrate`'s stages, then replace this process with ``cmd``.

    ``cmd`` runs with :meth:`Prepared.server_environment` and cloudboot's PID; its exit
    code is the container's. The command is looked up before anything is written or
    waited for, so a boot that cannot start its server fails first. ``prepared``, when
    given, is what :func:`prepare` made of ``environ``. Never returns: raises what
    :func:`migrate` raises, or :class:`ProgramError` (127 not found, 126 not executable).
    """
    with stop.handled():
        stop.check()
        prepared = prepared or prepare(environ)
        environment = prepared.server_environment()
        program = find_program(cmd, environment)
        extra = prepared.config.settings.stop_signal_numbers()
        with stop.handled(extra):
            _stages(prepared)
            exec_server(cmd, environment, program, stopping=(*stop.ENDING, *extra))


def exec_direct(
    environ: Mapping[str, str], cmd: Sequence[str], prepared: Prepared | None = None
) -> NoReturn:
    """A command that is not the server: the artifacts rendered and written, then
    ``cmd`` exec'd with the rendered environment at once (no wait, no database, no
    hooks). Logs ``cloudboot.exec.direct``."""
    with stop.handled():
        stop.check()
        prepared = prepared or prepare(environ)
        environment = prepared.server_environment()
        program = find_program(cmd, environment)
        write_artifacts(prepared)
        stop.check()
        get_logger().info(
            events.EXEC_DIRECT, program=cmd[0], pid=os.getpid(), why="not the server command"
        )
        exec_program(cmd, environment, what="command", path=program)


def exec_plain(environ: Mapping[str, str], cmd: Sequence[str]) -> NoReturn:
    """``cmd`` exec'd with ``environ`` as it is (nothing rendered)."""
    with stop.handled():
        stop.check()
        exec_program(cmd, environ, what="command", path=find_program(cmd, environ))


def find_program(cmd: Sequence[str], environment: Mapping[str, str]) -> str:
    """The path ``cmd[0]`` runs as, looked up on the ``PATH`` of ``environment``.

    Raises :class:`ProgramError`: 127 when it is not found, 126 when it is not an
    executable file (the codes shells use).
    """
    hint = "check the image's CMD and PATH"
    if not cmd or not cmd[0]:
        raise ProgramError("the command to run is empty", exit_code=EXIT_NOT_FOUND, hint=hint)
    name = cmd[0]
    if "/" in name:
        if not os.path.exists(name):
            raise ProgramError(
                f"the command {name!r} was not found", exit_code=EXIT_NOT_FOUND, hint=hint
            )
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise ProgramError(
                f"the command {name!r} cannot be executed: not an executable file",
                exit_code=EXIT_NOT_EXECUTABLE,
                hint="check that it is an executable file",
            )
        return name
    found = shutil.which(name, path=environment.get("PATH", os.defpath))
    if found is None:
        raise ProgramError(
            f"the command {name!r} was not found", exit_code=EXIT_NOT_FOUND, hint=hint
        )
    return found


def _stages(prepared: Prepared) -> None:
    """Write, wait, ensure the database, run the hooks."""
    # Imported here, not at the top: render and env import this module and must not
    # load tenacity or a driver.
    from .database import ensure_database, hook_lock  # noqa: PLC0415
    from .engines import close_quietly  # noqa: PLC0415
    from .hooks import run_hooks  # noqa: PLC0415
    from .wait import wait_ready  # noqa: PLC0415

    stop.check()
    write_artifacts(prepared)
    config = prepared.config
    target, settings, hooks = config.target, config.settings, config.hooks
    # When the first hook takes the lock, it takes it on the wait's connection: one
    # login fewer per boot (a TLS handshake and a password exchange with the server).
    readiness = wait_ready(
        target,
        create_missing=settings.create_database,
        keep=bool(hooks) and hooks[0].lock,
    )
    kept = readiness.connection
    try:
        if not readiness.database_exists:
            ensure_database(target, settings.collation)

        def lock(hook: Hook, adopt: Any) -> AbstractContextManager[Lease]:
            return hook_lock(
                target,
                hook.name,
                settings.release,
                adopt=adopt,
                lock_timeout=settings.lock_timeout,
                keepalive=settings.lock_keepalive,
            )

        run_hooks(hooks, prepared.server_environment(), lock, adopt=kept)
    finally:
        # A no-op once the first hook's lock has closed it. After a signal it may still be
        # in a worker's hands (bootstrap.stop.call): the exit closes it.
        if kept is not None and stop.requested() is None:
            close_quietly(kept)


def exec_server(
    cmd: Sequence[str],
    environment: Mapping[str, str],
    program: str,
    *,
    stopping: Sequence[int] = stop.ENDING,
) -> NoReturn:
    """Replace cloudboot with the server ``cmd`` (found at ``program``) and
    ``environment``, unless one of the ``stopping`` signals has come (then
    :class:`Interrupted`); logs ``cloudboot.exec`` with the program and the PID (never
    the arguments)."""
    stop.check()
    get_logger().info(events.EXEC, program=cmd[0], pid=os.getpid())
    exec_program(
        cmd,
        environment,
        what="server command",
        path=program,
        hint="check the image's CMD and PATH",
        stopping=stopping,
    )
