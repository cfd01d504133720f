"""The database engines: everything that differs between PostgreSQL and the MySQL
family lives behind :class:`Engine`, one module per engine.

Nothing outside this package branches on the engine: a stage asks :func:`engine_for`
for the target's engine and calls it. Adding an engine means one new module here and
one line in :data:`_MODULES`. The modules are light: each imports its driver inside the
functions that need it, so ``render`` and ``env`` never load a driver.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import RefusedError
from ..failures import (
    Failure,
    Reason,
    classify_os_error,
    detail_of,
    raised_inside,
    unexpected,
)
from ..target import EngineName, Target
from ..tls import TlsSetupError

LOCK_NAME = "cloudboot:hooks"
"""One lock for every locked hook: two different migrations must not interleave either."""

RUNS_TABLE = "cloudboot_hook_runs"
"""cloudboot's own table: one row per (hook, release) that completed."""

Created = Literal["created", "exists", "lost_race"]


class Connection(Protocol):
    """The part of DB-API 2 cloudboot uses; both drivers' connections have it."""

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClientSpec:
    """The engine's interactive SQL client (``cloudboot psql`` / ``cloudboot mysql``)."""

    command: str
    binaries: tuple[str, ...]
    package: str


@dataclass(frozen=True)
class ClientLaunch:
    """How to start the client already connected: ``files`` (name → text) become
    anonymous in-memory files; ``argv`` and ``environment`` may name them as
    :func:`placeholder` ``(name)``, replaced by the file's ``/proc/self/fd/N`` path (in
    the text of a later file too)."""

    argv: tuple[str, ...]
    environment: Mapping[str, str]
    files: Mapping[str, str]


class Engine(Protocol):
    """One database engine family. Every method that talks to a server takes the
    :class:`~bootstrap.target.Target` and raises the driver's exceptions (or
    :class:`~bootstrap.tls.TlsSetupError`) for :meth:`classify`, unless it says
    otherwise."""

    name: EngineName
    title: str
    default_port: int
    detection_ports: tuple[int, ...]
    secret_names: tuple[str, ...]
    """``engine`` values of a Secrets Manager secret that mean this engine."""
    url_schemes: tuple[str, ...]
    """URL schemes of an incoming ``DATABASE_URL`` that mean this engine."""
    artifacts: frozenset[str]
    """The file artifacts this engine's tools read (``pgpass``, ``my_cnf``, ...)."""
    default_artifacts: Mapping[str, str]
    """Artifacts written unless turned off: kind → default path (``~`` is HOME)."""
    max_key_length: int
    """Longest hook name or release id the runs table keeps."""
    client: ClientSpec

    def dbname_problem(self, dbname: str) -> str | None:
        """Why the server cannot hold a database of this name, or ``None``."""
        ...

    def connect(self, target: Target, *, timeout: float, dbname: str | None = None) -> Connection:
        """A new autocommit connection over the target's TLS; ``dbname`` ``None`` means
        the target's database, ``""`` the engine's maintenance database. ``timeout``
        bounds the connect and the login (and, for MySQL, every later read)."""
        ...

    def classify(self, exc: BaseException) -> Failure:
        """What ``exc``, raised by this engine's connections, means. Never raises."""
        ...

    def create_database(self, target: Target, collation: str | None, timeout: float) -> Created:
        """Create the target's database unless it exists; whether this call made it, it
        was there, or another session created it meanwhile. Race-safe. Raises
        :class:`~bootstrap.errors.RefusedError` when the user may not create databases,
        :class:`~bootstrap.errors.ConfigError` for a collation the server does not
        know."""
        ...

    def acquire_lock(
        self,
        connection: Connection,
        target: Target,
        on_wait: Callable[[], None],
        timeout: float,
    ) -> bool:
        """Take the hooks' lock on ``connection`` (it ends with the session), calling
        ``on_wait`` once if another session holds it; false when it was not free
        within ``timeout`` seconds."""
        ...

    def bound_lock_session(self, connection: Connection, keepalive: int) -> None:
        """Make the server end this session within about ``keepalive`` seconds once its
        client has vanished without closing (no FIN, no RST), provided the client
        sends something at least every ``keepalive / 3`` seconds while it lives."""
        ...

    def session_socket(self, connection: Connection) -> int:
        """The file descriptor of ``connection``'s socket."""
        ...

    def create_runs_table(self, connection: Connection, target: Target) -> None:
        """Create ``cloudboot_hook_runs`` unless it exists. Raises
        :class:`~bootstrap.errors.RefusedError` naming the privilege to grant when the
        user may not create it."""
        ...

    def record_run_sql(self) -> str:
        """The statement that records ``(hook, release_id)``, a duplicate being no error."""
        ...

    def still_starting(self, address: tuple[Any, ...], timeout: float) -> bool | None:
        """Whether the server at ``address`` (a ``getaddrinfo`` entry) still says it is
        starting up, asked without TLS and without any credential: a probe far cheaper
        than a login. ``None`` when the engine cannot tell that way, or no answer came."""
        ...

    def start_tls(self, sock: socket.socket) -> None:
        """``cloudboot check``: on a fresh TCP connection, what the engine's protocol sends
        before the TLS handshake. Raises :class:`~bootstrap.errors.CloudbootError`
        subclasses for a server without TLS or one that speaks another protocol, and
        ``OSError`` when the connection breaks."""
        ...

    def answers(self, sock: socket.socket) -> bool:
        """Whether the server on the fresh TCP connection ``sock`` speaks this engine's
        protocol (for telling a port of the other engine from garbage). Raises
        ``OSError`` when the connection breaks or times out."""
        ...

    def session_info(self, connection: Connection) -> tuple[str, str | None]:
        """The user the server sees and the TLS version of this session (``None``:
        plaintext)."""
        ...

    def server_info(self, connection: Connection) -> dict[str, Any]:
        """Version, product, and character set and collation of server and database."""
        ...

    def client_launch(self, target: Target, *, service_name: str) -> ClientLaunch:
        """The SQL client, connected to the target, password in an in-memory file."""
        ...


_MODULES: dict[EngineName, str] = {
    "postgres": "bootstrap.engines.postgres",
    "mysql": "bootstrap.engines.mysql",
}


def engine_for(name: EngineName) -> Engine:
    """The engine called ``name``."""
    engine: Engine = importlib.import_module(_MODULES[name]).ENGINE
    return engine


def all_engines() -> tuple[Engine, ...]:
    """Every engine, in a fixed order (for detection)."""
    return tuple(engine_for(name) for name in _MODULES)


def other_engine_at(target: Target, timeout: float = 1.0) -> Engine | None:
    """The engine, other than the target's, whose protocol the server at the target's
    address speaks; ``None`` when none does (or it cannot be reached)."""
    return engine_answering(target.host, target.port, target.engine, timeout)


def identified(failure: Failure, target: Target, other: str) -> Failure:
    """``failure`` named for what it is when the server at the target's address said
    nothing or spoke another protocol and ``other`` (an engine's title, from
    :func:`other_engine_at`; empty when none answered) speaks there: a configuration
    error, not a server to wait for."""
    if not other or failure.reason not in (Reason.SILENT_SERVER, Reason.WRONG_PROTOCOL):
        return failure
    this = engine_for(target.engine).title
    return Failure(
        Reason.OTHER_ENGINE,
        f"{target.address} answers as a {other} server",
        f"check the port (and the engine, {this} now): {target.port} belongs to a {other} server",
    )


def needs_identifying(failure: Failure) -> bool:
    """Whether ``failure`` may mean the port belongs to the other engine's server."""
    return failure.reason in (Reason.SILENT_SERVER, Reason.WRONG_PROTOCOL)


def engine_answering(
    host: str, port: int, exclude: EngineName, timeout: float = 1.0
) -> Engine | None:
    """The engine other than ``exclude`` that the server at ``host:port`` speaks."""
    for engine in all_engines():
        if engine.name == exclude:
            continue
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if engine.answers(sock):
                    return engine
        except OSError:
            continue
    return None


def classify_driver_error(
    exc: BaseException,
    driver: str,
    classify: Callable[[BaseException, str], Failure | None],
    operational: type[BaseException],
) -> Failure:
    """What ``exc`` means, for an engine whose driver is the package ``driver``:
    cloudboot's own TLS set-up error and socket errors are classified alike for every
    engine; the driver's own exceptions by ``classify(exc, detail)``, then as a failed
    connection when they are ``operational``; anything else is unexpected."""
    if isinstance(exc, TlsSetupError):
        return Failure(Reason.CA_FILE_UNUSABLE, str(exc))
    if type(exc).__module__.split(".")[0] != driver:
        found = classify_os_error(exc)
        if found is None and raised_inside(exc, driver):
            # The driver choked on what the server sent: not its protocol.
            return Failure(Reason.WRONG_PROTOCOL, f"{type(exc).__name__}: {detail_of(exc)}")
        return found or unexpected(exc)
    detail = detail_of(exc)
    found = classify(exc, detail)
    if found is not None:
        return found
    if isinstance(exc, operational):
        return Failure(Reason.CONNECTION_FAILED, detail)
    return unexpected(exc)


def may_not_create(target: Target, grant: str) -> RefusedError:
    """The refusal when the user lacks the right to create the target's database."""
    return RefusedError(
        f"user {target.user} may not create database {target.dbname}",
        hint=f"create the database beforehand, or grant {grant} to the user",
    )


def watch_socket(fd: int) -> None:
    """Client-side TCP keepalives and a user timeout on the socket ``fd``: when the
    server or the path to it vanishes, the socket fails within about 3 s, idle or not,
    and a ``poll`` on it says so."""
    sock = socket.socket(fileno=os.dup(fd))  # closing the duplicate leaves ``fd`` open
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 3000)
    finally:
        sock.close()


def keepalive_parts(seconds: int) -> tuple[int, int, int]:
    """``(idle, interval, count)`` of TCP keepalives that drop a silent peer within
    ``seconds``: ``idle + interval * count <= seconds``."""
    interval = max(1, seconds // 4)
    return max(1, seconds - 3 * interval), interval, 3


def close_quietly(connection: Connection) -> None:
    """Close ``connection``, ignoring errors: PyMySQL raises on closing a connection it
    already dropped, which would hide the error that ended the connection."""
    with contextlib.suppress(Exception):
        connection.close()


def placeholder(name: str) -> str:
    """Where the path of the in-memory file ``name`` goes in a :class:`ClientLaunch`
    (NUL cannot be in any credential, so it cannot clash with one)."""
    return f"\0{name}\0"


def fetch_one(connection: Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The first row of ``sql`` (empty when there is none); the cursor is closed."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql, params or None)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return tuple(row or ())
