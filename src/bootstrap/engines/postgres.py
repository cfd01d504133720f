"""PostgreSQL (and Aurora PostgreSQL) through psycopg 3 and libpq.

psycopg is imported inside the functions: importing this module loads no driver.
"""

from __future__ import annotations

import errno
import hashlib
import math
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, RefusedError
from ..failures import Failure, Reason
from ..rendering import render_pg_service, render_pgpass
from ..target import Target
from . import (
    LOCK_NAME,
    RUNS_TABLE,
    ClientLaunch,
    ClientSpec,
    Connection,
    Created,
    classify_driver_error,
    close_quietly,
    fetch_one,
    keepalive_parts,
    may_not_create,
    placeholder,
)

# The SSLRequest packet: length 8, then the request code 1234.5679.
_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def _startup_packet() -> bytes:
    """A protocol-3 startup packet that names no real user or database: the server says
    "starting up" (SQLSTATE 57P03) before it looks at either, and nothing of the
    credentials crosses the network in plaintext."""
    body = struct.pack("!I", 196608)
    for key, value in (("user", "cloudboot-probe"), ("database", "cloudboot-probe")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


_STARTUP_PACKET = _startup_packet()
_STARTING_UP = b"C57P03\0"  # the SQLSTATE field of an ErrorResponse
_MAX_ANSWER = 8192

# What the server sent (after "FATAL:"), by how it begins: the user and database names
# inside may hold any character, a double quote included, so nothing is matched there.
_SERVER_RULES: tuple[tuple[str, Reason], ...] = (
    ('database "', Reason.MISSING_DATABASE),
    ("password authentication failed", Reason.BAD_PASSWORD),
    ('role "', Reason.NO_SUCH_ROLE),
    ("permission denied for database", Reason.NO_CONNECT_PERMISSION),
    ("the database system is starting up", Reason.STARTING_UP),
    ("the database system is not yet accepting", Reason.STARTING_UP),
    ("the database system is shutting down", Reason.SHUTTING_DOWN),
    ("the database system is in recovery", Reason.IN_RECOVERY),
    ("sorry, too many clients", Reason.TOO_MANY_CONNECTIONS),
    ("remaining connection slots", Reason.TOO_MANY_CONNECTIONS),
    ("too many connections", Reason.TOO_MANY_CONNECTIONS),
    ("terminating connection", Reason.TERMINATED),
)
_NO_HBA_ENTRY = "no pg_hba.conf entry"
_SERVER_SAYS = re.compile(r"\b(?:FATAL|ERROR|PANIC):\s+(.*)", re.DOTALL)

# libpq's own messages (no user or database names in them), lower-cased, in the order
# they are tried: first match wins. libpq gives a failed connection no SQLSTATE, so its
# words are all there is.
_CLIENT_RULES: tuple[tuple[str, Reason], ...] = (
    ("certificate verify failed", Reason.CERTIFICATE_UNTRUSTED),
    ("does not match host name", Reason.HOST_NAME_MISMATCH),
    ("root certificate file", Reason.CA_FILE_UNUSABLE),
    ("server does not support ssl", Reason.SERVER_WITHOUT_TLS),
    ("received invalid response to ssl negotiation", Reason.WRONG_PROTOCOL),
    ("expected authentication request from server", Reason.WRONG_PROTOCOL),
    ("connection refused", Reason.CONNECTION_REFUSED),
    ("failed to resolve host", Reason.NAME_NOT_RESOLVING),
    ("could not translate host name", Reason.NAME_NOT_RESOLVING),
    ("timeout expired", Reason.TIMED_OUT),
    ("timed out", Reason.TIMED_OUT),
    ("closed the connection unexpectedly", Reason.CONNECTION_DROPPED),
    ("connection has been closed unexpectedly", Reason.CONNECTION_DROPPED),
    ("ssl syscall error", Reason.CONNECTION_DROPPED),
    ("unexpected eof", Reason.CONNECTION_DROPPED),
    ("connection reset", Reason.CONNECTION_DROPPED),
    ("could not receive data", Reason.CONNECTION_DROPPED),
    ("could not send", Reason.CONNECTION_DROPPED),
    ("no route to host", Reason.NO_ROUTE),
    ("network is unreachable", Reason.NETWORK_UNREACHABLE),
    ("no password supplied", Reason.NO_PASSWORD),
    ("ssl error", Reason.TLS_HANDSHAKE),
    ("invalid connection option", Reason.INVALID_OPTION),
    ("invalid sslmode", Reason.INVALID_OPTION),
)


def _state_reasons() -> tuple[tuple[type[BaseException], Reason], ...]:
    """psycopg's exception classes (one per SQLSTATE) that a query on an open connection
    may end with, in the order they are tried (subclasses first)."""
    from psycopg import errors  # noqa: PLC0415 - only a postgres boot loads psycopg

    return (
        (errors.ConnectionTimeout, Reason.TIMED_OUT),
        (errors.InvalidCatalogName, Reason.MISSING_DATABASE),
        (errors.CannotConnectNow, Reason.STARTING_UP),
        (errors.ObjectInUse, Reason.TEMPLATE_IN_USE),
        (errors.AdminShutdown, Reason.TERMINATED),
        (errors.CrashShutdown, Reason.TERMINATED),
        (errors.TooManyConnections, Reason.TOO_MANY_CONNECTIONS),
        (errors.ConnectionFailure, Reason.CONNECTION_DROPPED),
        (errors.ConnectionDoesNotExist, Reason.CONNECTION_DROPPED),
        (errors.SqlclientUnableToEstablishSqlconnection, Reason.CONNECTION_FAILED),
        (errors.InvalidPassword, Reason.BAD_PASSWORD),
        (errors.InvalidAuthorizationSpecification, Reason.AUTH_FAILED),
        (errors.InsufficientPrivilege, Reason.PERMISSION_DENIED),
    )


def advisory_key(name: str) -> int:
    """A stable signed 64-bit ``pg_advisory_lock`` key for ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Postgres:
    """PostgreSQL. See :class:`bootstrap.engines.Engine` for what each member means."""

    name = "postgres"
    title = "PostgreSQL"
    default_port = 5432
    detection_ports = (5432,)
    secret_names = ("postgres", "postgresql", "aurora-postgresql")
    url_schemes = ("postgresql", "postgres")
    artifacts = frozenset({"pgpass", "pg_service", "profile"})
    default_artifacts: Mapping[str, str] = MappingProxyType(
        {"pgpass": "~/.pgpass", "pg_service": "~/.pg_service.conf"}
    )
    # A btree entry is at most a third of an 8 kB page; text keys well below that.
    max_key_length = 1000
    maintenance_dbnames = ("postgres", "template1")
    client = ClientSpec("psql", ("psql",), "postgresql-client")

    def dbname_problem(self, dbname: str) -> str | None:
        # NAMEDATALEN - 1: the server silently cuts longer names.
        if len(dbname.encode("utf-8")) > 63:
            return "is longer than 63 bytes, which PostgreSQL would cut"
        return None

    def connect(self, target: Target, *, timeout: float, dbname: str | None = None) -> Connection:
        import psycopg  # noqa: PLC0415 - only a postgres boot loads psycopg

        if dbname == "":
            return self._connect_maintenance(target, timeout)
        options: dict[str, Any] = {
            "host": target.host,
            "port": target.port,
            "dbname": target.dbname if dbname is None else dbname,
            "user": target.user,
            # A keyword, never inside a connection string: nothing to escape, nothing
            # that a parser could split.
            "password": target.password.reveal(),
            "sslmode": target.sslmode,
            # libpq takes whole seconds and at least 2.
            "connect_timeout": max(2, math.ceil(timeout)),
            "application_name": "cloudboot",
        }
        if target.ca_file is not None:
            options["sslrootcert"] = target.ca_file
        connection: Connection = psycopg.connect(autocommit=True, prepare_threshold=None, **options)
        return connection

    def _connect_maintenance(self, target: Target, timeout: float) -> Connection:
        """``postgres``, or ``template1`` where ``postgres`` was dropped."""
        first, fallback = self.maintenance_dbnames
        try:
            return self.connect(target, timeout=timeout, dbname=first)
        except Exception as exc:
            if self.classify(exc).reason is not Reason.MISSING_DATABASE:
                raise
        return self.connect(target, timeout=timeout, dbname=fallback)

    def classify(self, exc: BaseException) -> Failure:
        import psycopg  # noqa: PLC0415 - only a postgres boot loads psycopg

        return classify_driver_error(exc, "psycopg", _classify_psycopg, psycopg.OperationalError)

    def create_database(self, target: Target, collation: str | None, timeout: float) -> Created:
        from psycopg import errors, sql  # noqa: PLC0415

        connection = self.connect(target, timeout=timeout, dbname="")
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.dbname,))
            if cursor.fetchone():
                return "exists"
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.dbname))
            try:
                cursor.execute(statement)
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                return "lost_race"  # another task created it between our check and CREATE
            except errors.InsufficientPrivilege:
                raise may_not_create(target, "CREATEDB") from None
            return "created"
        finally:
            close_quietly(connection)

    def acquire_lock(
        self,
        connection: Connection,
        target: Target,
        on_wait: Callable[[], None],
        timeout: float,
    ) -> bool:
        from psycopg import errors  # noqa: PLC0415

        # Advisory locks belong to the database the session is in: per application.
        key = advisory_key(LOCK_NAME)
        if fetch_one(connection, "SELECT pg_try_advisory_lock(%s)", (key,))[:1] == (True,):
            return True
        on_wait()
        # lock_timeout bounds the server's own wait queue, which hands the lock over the
        # moment it is free; the wait runs in a worker thread (bootstrap.stop.call).
        millis = min(2**31 - 1, max(1, math.ceil(timeout * 1000)))
        fetch_one(connection, "SELECT set_config('lock_timeout', %s, false)", (f"{millis}ms",))
        try:
            fetch_one(connection, "SELECT pg_advisory_lock(%s)", (key,))
        except errors.LockNotAvailable:
            return False
        fetch_one(connection, "SELECT set_config('lock_timeout', '0', false)")
        return True

    def bound_lock_session(self, connection: Connection, keepalive: int) -> None:
        # Server-side TCP keepalives on this session's socket (any user may set them).
        idle, interval, count = keepalive_parts(keepalive)
        for name, value in (
            ("tcp_keepalives_idle", idle),
            ("tcp_keepalives_interval", interval),
            ("tcp_keepalives_count", count),
        ):
            fetch_one(connection, "SELECT set_config(%s, %s, false)", (name, str(value)))

    def session_socket(self, connection: Connection) -> int:
        return int(connection.fileno())  # type: ignore[attr-defined]

    def create_runs_table(self, connection: Connection, target: Target) -> None:
        from psycopg import errors  # noqa: PLC0415

        try:
            connection.cursor().execute(
                f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ("
                "hook text NOT NULL, release_id text NOT NULL, "
                "finished_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (hook, release_id))"
            )
        except (errors.InsufficientPrivilege, errors.InvalidSchemaName):
            (schema,) = fetch_one(connection, "SELECT current_schema()") or (None,)
            raise _may_not_create_table(target, schema) from None

    def record_run_sql(self) -> str:
        return f"INSERT INTO {RUNS_TABLE} (hook, release_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"  # noqa: S608 - constant table name

    def still_starting(self, address: tuple[Any, ...], timeout: float) -> bool | None:
        family, _type, _proto, _name, sockaddr = address
        data = b""
        deadline = time.monotonic() + timeout
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                sock.sendall(_STARTUP_PACKET)
                # One message: a type byte, then its length (which counts itself). An
                # ErrorResponse is a few hundred bytes; whatever claims more, or trickles
                # past the timeout, is not a server saying it starts.
                while len(data) < 5 or len(data) < 1 + int.from_bytes(data[1:5], "big"):
                    if len(data) > _MAX_ANSWER:
                        return None
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if data[:1] != b"E":
                        return False  # an authentication request: it takes logins
        except OSError:
            return None
        if not data:
            return None
        return _STARTING_UP in data

    def start_tls(self, sock: socket.socket) -> None:
        # PostgreSQL speaks plaintext first: ask for TLS, and expect "S".
        sock.sendall(_SSL_REQUEST)
        answer = sock.recv(1)
        if answer == b"S":
            return
        if answer == b"N":
            raise RefusedError(
                "the server does not accept TLS (it answered the SSLRequest with 'N')",
                hint="turn on ssl on the server (on RDS it is on unless the parameter group "
                "turns it off), or set CLOUDBOOT_SSLMODE=disable if plaintext is intended",
            )
        if not answer:
            raise OSError(errno.ECONNRESET, "connection closed by the server")
        raise ConfigError(
            ["the server does not speak PostgreSQL's protocol"],
            hint="check the port and CLOUDBOOT_ENGINE: this may be a MySQL-family server",
        )

    def answers(self, sock: socket.socket) -> bool:
        sock.sendall(_SSL_REQUEST)
        return sock.recv(2) in (b"S", b"N")

    def session_info(self, connection: Connection) -> tuple[str, str | None]:
        user, version = fetch_one(
            connection,
            "SELECT current_user, (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
        )
        return str(user), None if version is None else str(version)

    def server_info(self, connection: Connection) -> dict[str, Any]:
        version, product, encoding, collate, ctype = fetch_one(
            connection,
            "SELECT current_setting('server_version'), version(), "
            "pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_database WHERE datname = current_database()",
        )
        return {
            "version": version,
            "product": product,
            "encoding": encoding,
            "lc_collate": collate,
            "lc_ctype": ctype,
        }

    def client_launch(self, target: Target, *, service_name: str) -> ClientLaunch:
        # The password line for any database on that server, so that `cloudboot psql
        # postgres` logs in too; host, port and user stay exact, so the password goes
        # nowhere else.
        pgpass = render_pgpass(target.on_database("*"))
        service, problems = render_pg_service(
            target, name=service_name, passfile=placeholder("pgpass")
        )
        if problems:
            raise ConfigError(problems)
        return ClientLaunch(
            # -w: never prompt, even when the password file does not match (another -d
            # or -h given by the operator): fail instead of hanging on a closed stdin.
            argv=("psql", "-w"),
            environment={
                "PGSERVICEFILE": placeholder("pg_service.conf"),
                "PGSERVICE": service_name,
                "PGPASSFILE": placeholder("pgpass"),
            },
            files={"pgpass": pgpass, "pg_service.conf": service},
        )


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _may_not_create_table(target: Target, schema: str | None) -> RefusedError:
    user = _pg_ident(target.user)
    if schema is None:
        return RefusedError(
            f"user {target.user} logs in to {target.dbname} but has no schema to create "
            f"cloudboot's table {RUNS_TABLE} in (search_path names none it may use)",
            hint=f"create a schema the user owns (CREATE SCHEMA AUTHORIZATION {user}) or "
            "set the user's search_path to one it may create tables in",
        )
    return RefusedError(
        f"user {target.user} logs in to {target.dbname} but may not create cloudboot's "
        f"table {RUNS_TABLE} in schema {schema} (permission denied for schema {schema})",
        hint=f"grant it: GRANT CREATE ON SCHEMA {_pg_ident(schema)} TO {user}; "
        "PostgreSQL 15 and later no longer let every user create tables in public "
        "(or create the table beforehand as its owner, and grant the user SELECT and "
        "INSERT on it)",
    )


def _classify_psycopg(exc: BaseException, detail: str) -> Failure | None:
    for error_class, reason in _state_reasons():
        if isinstance(exc, error_class):
            return Failure(reason, detail)
    # psycopg puts the last attempt's failure first; a summary of all attempts follows.
    # A failed login has no SQLSTATE: libpq's words are all there is.
    first = str(exc).split("Multiple connection attempts failed", 1)[0]
    server = _SERVER_SAYS.search(first)
    if server is not None:
        return Failure(_server_reason(server.group(1).strip()), detail)
    message = first.lower()
    for needle, reason in _CLIENT_RULES:
        if needle in message:
            return Failure(reason, detail)
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is not None and getattr(pgconn, "needs_password", False):
        return Failure(Reason.NO_PASSWORD, detail)
    return None


def _server_reason(said: str) -> Reason:
    """A message the server sent during the login (the text after ``FATAL:``)."""
    text = said.lower()
    if text.startswith(_NO_HBA_ENTRY):
        # "... for host "h", user "u", database "d", no encryption": the line's end.
        line = text.splitlines()[0].rstrip()
        return Reason.TLS_REQUIRED if line.endswith("no encryption") else Reason.NOT_IN_PG_HBA
    for start, reason in _SERVER_RULES:
        if text.startswith(start):
            return reason
    if "authentication failed" in text:
        return Reason.AUTH_FAILED
    return Reason.SERVER_REFUSED


ENGINE = Postgres()
