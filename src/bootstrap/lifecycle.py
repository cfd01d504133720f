"""The boot, stage by stage: load → render → write → wait → ensure the database →
hooks → exec. Each stage takes what the one before returned.

While cloudboot runs (it is PID 1 in a container until it execs), SIGTERM and SIGINT
end the boot at once with :class:`Interrupted` (exit 128 + n); a running hook's process
group gets the signal too. After the exec the server has cloudboot's PID and handles
its own signals.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from .credentials import DatabaseCredentials, register_secret_form
from .errors import Interrupted
from .execute import exec_program
from .logs import get_logger
from .render import Rendering, quote_component, render
from .settings import Hook, Settings
from .sources import load
from .write import Planned, plan, write

if TYPE_CHECKING:
    from .hooks import Lease
    from .wait import Readiness


@dataclass(frozen=True)
class Prepared:
    """Settings, credentials and the rendering, with the writes already planned."""

    settings: Settings
    credentials: DatabaseCredentials
    rendering: Rendering
    planned: tuple[Planned, ...]
    environ: Mapping[str, str]

    def server_environment(self) -> dict[str, str]:
        """The environment the server is exec'd with: ours plus the rendered variables."""
        return {**self.environ, **self.rendering.environment}


def prepare(environ: Mapping[str, str]) -> Prepared:
    """Load and render everything and plan the writes; writes nothing."""
    settings, credentials = load(environ)
    # The password as the URL carries it, so that the log redaction catches it too.
    register_secret_form(quote_component(credentials.password.reveal()))
    rendering = render(credentials, settings, environ)
    planned = tuple(plan(rendering.files))
    _log_sources(credentials)
    return Prepared(settings, credentials, rendering, planned, environ)


def _log_sources(credentials: DatabaseCredentials) -> None:
    get_logger().info(
        "cloudboot.sources.found",
        source=credentials.source,
        variables=list(credentials.variables),
        engine=credentials.engine,
        host=credentials.host,
        port=credentials.port,
        dbname=credentials.dbname,
    )


def write_artifacts(prepared: Prepared) -> None:
    """Write what :func:`prepare` planned, all or nothing, and log each artifact."""
    write(prepared.planned, prepared.settings.owner)
    log = get_logger()
    for item in prepared.planned:
        log.info(
            "cloudboot.render.file",
            kind=item.artifact.kind,
            path=str(item.artifact.path),
            mode=f"{item.mode:04o}",
            action=item.action,
        )


@contextmanager
def signals_end_the_boot() -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGINT raises :class:`Interrupted`;
    later ones are ignored so that cleanup (ending a hook's group) is not cut short.

    The previous handlers come back afterwards. Outside the main thread (a library
    caller's worker) signals cannot be handled and nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in _ENDING_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


_ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def wait_only(environ: Mapping[str, str]) -> Readiness:
    """``cloudboot wait``: load the credentials, then wait until the database answers.

    Writes nothing and creates nothing. Raises what :func:`bootstrap.wait.wait_ready`
    raises (69, 77), :class:`ConfigError` (78) or :class:`Interrupted`.
    """
    from .wait import wait_ready  # noqa: PLC0415 - tenacity and drivers load only here

    with signals_end_the_boot():
        settings, credentials = load(environ)
        _log_sources(credentials)
        return wait_ready(credentials, settings, environ)


def migrate(environ: Mapping[str, str]) -> Prepared:
    """``cloudboot migrate`` and the boot up to the exec: prepare, write the artifacts,
    wait, create the database when missing (and allowed), run the hooks.

    Returns what was prepared. Every failure raises a :class:`CloudbootError` with its
    exit code; nothing after a failed stage runs.
    """
    with signals_end_the_boot():
        return _stages(environ)


def boot(environ: Mapping[str, str], cmd: Sequence[str]) -> NoReturn:
    """The boot: :func:`migrate`'s stages, then replace this process with ``cmd``.

    ``cmd`` runs with :meth:`Prepared.server_environment` and cloudboot's PID; its exit
    code is the container's. Never returns: raises what :func:`migrate` raises, or
    :class:`ProgramError` (127 not found, 126 not executable).
    """
    # The exec happens with our handlers still installed: exec resets them to the
    # defaults, and a signal just before it still ends the boot with 128 + n.
    with signals_end_the_boot():
        prepared = _stages(environ)
        exec_server(cmd, prepared.server_environment())


def _stages(environ: Mapping[str, str]) -> Prepared:
    # Imported here, not at the top: render and env import this module and must not
    # load tenacity or a driver.
    from .connect import close_quietly  # noqa: PLC0415
    from .database import ensure_database, hook_lock  # noqa: PLC0415
    from .hooks import run_hooks  # noqa: PLC0415
    from .wait import wait_ready  # noqa: PLC0415

    prepared = prepare(environ)
    write_artifacts(prepared)
    settings, credentials = prepared.settings, prepared.credentials
    hooks = settings.all_hooks()
    # When the first hook takes the lock, it takes it on the wait's connection: one
    # login fewer per boot (a TLS handshake and a password exchange with the server).
    readiness = wait_ready(credentials, settings, environ, keep=bool(hooks) and hooks[0].lock)
    spare = [] if readiness.connection is None else [readiness.connection]
    try:
        if not readiness.database_exists:
            ensure_database(credentials, settings, environ)

        def lock(hook: Hook) -> AbstractContextManager[Lease]:
            adopt = spare.pop() if spare else None
            return hook_lock(credentials, settings, environ, hook.name, adopt=adopt)

        run_hooks(hooks, prepared.server_environment(), lock)
    finally:
        for connection in spare:
            close_quietly(connection)
    return prepared


def exec_server(cmd: Sequence[str], environment: Mapping[str, str]) -> NoReturn:
    """Replace cloudboot with the server ``cmd`` and ``environment``; logs
    ``cloudboot.exec`` with the program and the PID (never the arguments)."""
    get_logger().info("cloudboot.exec", program=cmd[0], pid=os.getpid())
    exec_program(cmd, environment, what="server command", hint="check the image's CMD and PATH")
