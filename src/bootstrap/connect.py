"""One connection to the database over the configured TLS, and what a failure means.

:func:`connect` and :func:`classify` are shared by the boot (readiness, ensure the
database, hook locks) and ``cloudboot check``; their signatures are stable.

The drivers are imported inside the functions: ``render`` and ``env`` never load them,
and a boot loads only its own engine's driver.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .credentials import DatabaseCredentials
from .logs import redact
from .settings import Settings
from .tls import TlsSetupError, ca_file, client_context

FailureKind = Literal["retryable", "auth", "tls", "missing_database", "fatal"]

# Failure reasons that mean no TCP connection was made: a TCP probe can watch for the
# port to open instead of a full login (``bootstrap.wait``).
NETWORK_REASONS = frozenset(
    {"connection refused", "no route to host", "network unreachable", "timed out"}
)

# The database to log in to when the configured one may not exist yet. For MySQL the
# empty name means "no default database", which every account may use.
MAINTENANCE_DBNAME = {"postgres": "postgres", "mysql": ""}


class Connection(Protocol):
    """The part of DB-API 2 cloudboot uses; both drivers' connections have it."""

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Failure:
    """What a connection failure means for the caller.

    ``kind``: ``retryable`` (try again later), ``auth`` (credentials refused; worth at
    most a few tries), ``tls`` (certificate or TLS negotiation: never retried),
    ``missing_database`` (logged in, the database does not exist), ``fatal`` (nothing
    will change by waiting). ``reason`` is a short phrase and ``detail`` the driver's
    message, both free of secrets; ``hint`` says what to do, or is ``None``.
    """

    kind: FailureKind
    reason: str
    hint: str | None = None
    detail: str = ""


def connect(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    dbname: str | None = None,
    timeout: float | None = None,
) -> Connection:
    """A new autocommit DB-API connection, logged in over ``settings.sslmode``.

    ``dbname`` ``None`` means ``credentials.dbname``; see :data:`MAINTENANCE_DBNAME` for
    a database that always exists. ``timeout`` (default ``settings.connect_timeout``)
    bounds the TCP connect and the login; for MySQL it also bounds every later read, so
    a query on such a connection must answer within it. It is at least 2 s (libpq's
    floor; psycopg also rounds it up to whole seconds). Raises the driver's exception
    (or :class:`TlsSetupError`); hand it to :func:`classify`. The password goes to the
    driver as a keyword, never inside a connection string.
    """
    name = credentials.dbname if dbname is None else dbname
    seconds = max(2.0, settings.connect_timeout if timeout is None else timeout)
    if credentials.engine == "postgres":
        return _connect_postgres(credentials, settings, environ, name, seconds)
    return _connect_mysql(credentials, settings, environ, name, seconds)


def _connect_postgres(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    dbname: str,
    timeout: float,
) -> Connection:
    import psycopg  # noqa: PLC0415 - only the postgres boot loads psycopg

    options: dict[str, Any] = {
        "host": credentials.host,
        "port": credentials.port,
        "dbname": dbname,
        "user": credentials.username,
        "password": credentials.password.reveal(),
        "sslmode": settings.sslmode,
        "connect_timeout": max(2, math.ceil(timeout)),
        "application_name": "cloudboot",
    }
    ca = ca_file(settings, environ)
    if ca is not None:
        options["sslrootcert"] = ca
    return psycopg.connect(autocommit=True, prepare_threshold=None, **options)


def _connect_mysql(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    dbname: str,
    timeout: float,
) -> Connection:
    import pymysql  # noqa: PLC0415 - only the MySQL-family boot loads PyMySQL

    context = client_context(settings, environ)
    connection: Connection = pymysql.connect(
        host=credentials.host,
        port=credentials.port,
        user=credentials.username,
        # A str password is sent as Latin-1 by PyMySQL; UTF-8 bytes log in with any.
        password=credentials.password.reveal().encode("utf-8"),
        database=dbname or None,
        ssl=context,
        ssl_disabled=context is None,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        charset="utf8mb4",
        autocommit=True,
    )
    return connection


def close_quietly(connection: Connection) -> None:
    """Close ``connection``, ignoring errors: PyMySQL raises on closing a connection it
    already dropped, which would hide the error that ended the connection."""
    with contextlib.suppress(Exception):
        connection.close()


# --- classification ------------------------------------------------------------------


def classify(exc: BaseException) -> Failure:
    """What ``exc``, raised by :func:`connect` or a query on its connection, means.

    Never raises; an exception it does not know is ``fatal`` unless it is a driver's
    operational (network-side) error, which is ``retryable``.
    """
    if isinstance(exc, TlsSetupError):
        return Failure("tls", str(exc), "set CLOUDBOOT_CA_FILE to a readable PEM bundle", str(exc))
    module = type(exc).__module__.split(".")[0]
    if module == "psycopg":
        return _classify_postgres(exc)
    if module == "pymysql":
        return _classify_mysql(exc)
    if isinstance(exc, OSError):
        return _classify_os_error(exc, _detail(exc))
    return Failure("fatal", f"unexpected {type(exc).__name__}", None, _detail(exc))


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return str(redact(text))[:400]


HINT_CA = (
    "the server's certificate is not issued by a CA in the CA file: set CLOUDBOOT_CA_FILE "
    "to the bundle of the CA that issued it (RDS/Aurora: the RDS global-bundle.pem)"
)
HINT_HOSTNAME = (
    "the certificate does not name the host cloudboot connects to: use the host name "
    "the certificate was issued for, or CLOUDBOOT_SSLMODE=verify-ca"
)
HINT_CREDENTIALS = "check the username and password in the injected secret"
HINT_TLS_REQUIRED = "the server requires TLS: do not set CLOUDBOOT_SSLMODE=disable"
HINT_NO_TLS = "the server does not offer TLS; enable it on the server"
HINT_CREATE = "create the database, or let cloudboot create it (CLOUDBOOT_CREATE_DATABASE=true)"

# What the server sent (after "FATAL:"), by how it begins: the user and database names
# inside may hold any character, a double quote included, so nothing is matched there.
_POSTGRES_SERVER_RULES: tuple[tuple[str, FailureKind, str, str | None], ...] = (
    ('database "', "missing_database", "database does not exist", HINT_CREATE),
    ("password authentication failed", "auth", "password authentication failed",
     HINT_CREDENTIALS),
    ('role "', "auth", "role does not exist", HINT_CREDENTIALS),
    ("permission denied for database", "auth", "no permission to connect",
     "grant CONNECT on the database to the user"),
    ("the database system is starting up", "retryable", "database starting up", None),
    ("the database system is not yet accepting", "retryable", "database starting up", None),
    ("the database system is shutting down", "retryable", "database shutting down", None),
    ("the database system is in recovery", "retryable", "database in recovery", None),
    ("sorry, too many clients", "retryable", "too many connections", None),
    ("remaining connection slots", "retryable", "too many connections", None),
    ("too many connections", "retryable", "too many connections", None),
    ("terminating connection", "retryable", "connection terminated by the server", None),
)  # fmt: skip
_NO_HBA_ENTRY = "no pg_hba.conf entry"
_SERVER_SAYS = re.compile(r"\b(?:FATAL|ERROR|PANIC):\s+(.*)", re.DOTALL)

# libpq's own messages (no user or database names in them), lower-cased, in the order
# they are tried: first match wins.
_POSTGRES_CLIENT_RULES: tuple[tuple[str, FailureKind, str, str | None], ...] = (
    ("certificate verify failed", "tls", "certificate not trusted", HINT_CA),
    ("does not match host name", "tls", "host name does not match the certificate",
     HINT_HOSTNAME),
    ("root certificate file", "tls", "CA file missing or unreadable",
     "set CLOUDBOOT_CA_FILE to a readable PEM bundle"),
    ("server does not support ssl", "tls", "server does not offer TLS", HINT_NO_TLS),
    ("connection refused", "retryable", "connection refused", None),
    ("failed to resolve host", "retryable", "host name does not resolve", None),
    ("could not translate host name", "retryable", "host name does not resolve", None),
    ("timeout expired", "retryable", "timed out", None),
    ("timed out", "retryable", "timed out", None),
    ("closed the connection unexpectedly", "retryable", "connection dropped", None),
    ("connection has been closed unexpectedly", "retryable", "connection dropped", None),
    ("ssl syscall error", "retryable", "connection dropped", None),
    ("unexpected eof", "retryable", "connection dropped", None),
    ("connection reset", "retryable", "connection dropped", None),
    ("could not receive data", "retryable", "connection dropped", None),
    ("could not send", "retryable", "connection dropped", None),
    ("no route to host", "retryable", "no route to host", None),
    ("network is unreachable", "retryable", "network unreachable", None),
    ("no password supplied", "auth", "no password supplied", HINT_CREDENTIALS),
    ("ssl error", "tls", "TLS handshake failed", None),
    ("invalid connection option", "fatal", "invalid connection option", None),
    ("invalid sslmode", "fatal", "invalid sslmode", None),
)  # fmt: skip


def _classify_postgres(exc: BaseException) -> Failure:
    import psycopg  # noqa: PLC0415

    detail = _detail(exc)
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return Failure("retryable", "timed out", None, detail)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "3D000":
        return Failure("missing_database", "database does not exist", HINT_CREATE, detail)
    by_state = _POSTGRES_STATES.get(sqlstate or "")
    if by_state is not None:
        return Failure(by_state[0], by_state[1], by_state[2], detail)
    # psycopg puts the last attempt's failure first; a summary of all attempts follows.
    first = str(exc).split("Multiple connection attempts failed", 1)[0]
    server = _SERVER_SAYS.search(first)
    if server is not None:
        return _classify_postgres_server(server.group(1).strip(), detail)
    message = first.lower()
    for needle, kind, reason, hint in _POSTGRES_CLIENT_RULES:
        if needle in message:
            return Failure(kind, reason, hint, detail)
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is not None and getattr(pgconn, "needs_password", False):
        return Failure("auth", "the server asked for a password", HINT_CREDENTIALS, detail)
    if isinstance(exc, psycopg.OperationalError):
        return Failure("retryable", "connection failed", None, detail)
    return Failure("fatal", f"unexpected {type(exc).__name__}", None, detail)


def _classify_postgres_server(said: str, detail: str) -> Failure:
    """A message the server sent during the login (the text after ``FATAL:``)."""
    text = said.lower()
    if text.startswith(_NO_HBA_ENTRY):
        # "... for host "h", user "u", database "d", no encryption": the line's end.
        line = text.splitlines()[0].rstrip()
        if line.endswith("no encryption"):
            return Failure("tls", "server refuses a login without TLS", HINT_TLS_REQUIRED, detail)
        return Failure(
            "auth",
            "host not allowed by pg_hba.conf",
            "the server does not accept this user from this address",
            detail,
        )
    for start, kind, reason, hint in _POSTGRES_SERVER_RULES:
        if text.startswith(start):
            return Failure(kind, reason, hint, detail)
    if "authentication failed" in text:
        return Failure("auth", "authentication failed", HINT_CREDENTIALS, detail)
    return Failure("retryable", "the server refused the connection", None, detail)


# SQLSTATEs a query on an open connection may end with (login failures carry none).
_POSTGRES_STATES: dict[str, tuple[FailureKind, str, str | None]] = {
    "57P03": ("retryable", "database starting up", None),
    "55006": ("retryable", "template database in use", None),
    "57P01": ("retryable", "connection terminated by the server", None),
    "57P02": ("retryable", "connection terminated by the server", None),
    "53300": ("retryable", "too many connections", None),
    "08006": ("retryable", "connection dropped", None),
    "08003": ("retryable", "connection dropped", None),
    "08001": ("retryable", "connection failed", None),
    "28P01": ("auth", "password authentication failed", HINT_CREDENTIALS),
    "28000": ("auth", "authorization failed", HINT_CREDENTIALS),
    "42501": ("auth", "permission denied", None),
}

# MySQL and MariaDB server and client error numbers.
_MYSQL_CODES: dict[int, tuple[FailureKind, str, str | None]] = {
    1040: ("retryable", "too many connections", None),
    1203: ("retryable", "user has too many connections", None),
    1226: ("retryable", "user exceeded a resource limit", None),
    1053: ("retryable", "server shutting down", None),
    1077: ("retryable", "server shutting down", None),
    1927: ("retryable", "connection killed by the server", None),
    2002: ("retryable", "connection failed", None),
    2006: ("retryable", "connection dropped", None),
    2013: ("retryable", "connection dropped", None),
    1049: ("missing_database", "database does not exist", HINT_CREATE),
    1044: ("auth", "access to the database denied", "grant the user access to the database"),
    1130: ("auth", "host not allowed to connect", "the server does not accept this address"),
    1698: ("auth", "access denied", HINT_CREDENTIALS),
    1251: ("fatal", "authentication method not supported", None),
    1129: (
        "fatal",
        "host blocked after too many connection errors",
        "run FLUSH HOSTS on the server",
    ),
    2026: ("tls", "server does not offer TLS", HINT_NO_TLS),
    3159: ("tls", "server refuses a login without TLS", HINT_TLS_REQUIRED),
}


def _classify_mysql(exc: BaseException) -> Failure:
    import pymysql  # noqa: PLC0415

    detail = _detail(exc)
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code == 2003:
        cause = getattr(exc, "original_exception", None)
        if isinstance(cause, BaseException):
            return _classify_os_error(cause, detail)
        return Failure("retryable", "connection failed", None, detail)
    if code == 1045:
        # MariaDB answers a plaintext login under require_secure_transport with 1045,
        # the same number as a wrong password: say both.
        return Failure(
            "auth",
            "access denied",
            HINT_CREDENTIALS + "; a server that requires TLS answers a plaintext login the "
            "same way, so also check CLOUDBOOT_SSLMODE is not disable",
            detail,
        )
    known = _MYSQL_CODES.get(code or 0)
    if known is not None:
        return Failure(known[0], known[1], known[2], detail)
    if isinstance(exc, pymysql.err.OperationalError):
        return Failure("retryable", "connection failed", None, detail)
    return Failure("fatal", f"unexpected {type(exc).__name__}", None, detail)


def _classify_os_error(exc: BaseException, detail: str) -> Failure:
    """Network, DNS and TLS errors raised by a socket (PyMySQL's ``original_exception``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = (exc.verify_message or str(exc)).lower()
        if "hostname" in text or "ip address mismatch" in text or exc.verify_code == 62:
            return Failure("tls", "host name does not match the certificate", HINT_HOSTNAME, detail)
        return Failure("tls", "certificate not trusted", HINT_CA, detail)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Failure("retryable", "connection dropped", None, detail)
    if isinstance(exc, ssl.SSLError):
        return Failure("tls", "TLS handshake failed", None, detail)
    if isinstance(exc, socket.gaierror):
        return Failure("retryable", "host name does not resolve", None, detail)
    if isinstance(exc, ConnectionRefusedError):
        return Failure("retryable", "connection refused", None, detail)
    if isinstance(exc, TimeoutError):
        return Failure("retryable", "timed out", None, detail)
    if isinstance(exc, ConnectionError):
        return Failure("retryable", "connection dropped", None, detail)
    if isinstance(exc, OSError):
        return Failure("retryable", exc.strerror or "network error", None, detail)
    return Failure("fatal", f"unexpected {type(exc).__name__}", None, detail)
