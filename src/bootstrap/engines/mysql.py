"""The MySQL family (MySQL, MariaDB, Aurora MySQL, TiDB) through PyMySQL.

The queries are written for MySQL 8.0 / Aurora MySQL 3, MariaDB 10.11 and TiDB alike
(README, "Engines"); only MariaDB 10.11 runs here. PyMySQL is imported inside the
functions: importing this module loads no driver.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import struct
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, RefusedError, UnavailableError
from ..failures import HINT_DENIED_OR_PLAINTEXT, Failure, Reason, SilentServer, classify_os_error
from ..rendering import render_my_cnf
from ..target import Target
from ..tls import client_context
from . import (
    LOCK_NAME,
    RUNS_TABLE,
    ClientLaunch,
    ClientSpec,
    Connection,
    Created,
    classify_driver_error,
    close_quietly,
    engine_answering,
    fetch_one,
    may_not_create,
    placeholder,
)

_MAX_KEY = 190  # utf8mb4 VARCHAR(190): a two-column primary key any InnoDB row format takes
_MAX_LOCK_NAME = 64  # GET_LOCK names: MySQL 5.7+ refuses longer ones

# Server error numbers PyMySQL's constants do not name (the servers' own symbols).
ER_CONNECTION_KILLED = 1927  # MariaDB
ER_ACCESS_DENIED_NO_PASSWORD_ERROR = 1698
ER_SECURE_TRANSPORT_REQUIRED = 3159  # MySQL 5.7+
ER_CLIENT_INTERACTION_TIMEOUT = 4031  # MySQL 8.0.24+


def _code_reasons() -> dict[int, Reason]:
    from pymysql.constants import CR, ER  # noqa: PLC0415 - only a MySQL boot loads PyMySQL

    return {
        ER.CON_COUNT_ERROR: Reason.TOO_MANY_CONNECTIONS,
        ER.TOO_MANY_USER_CONNECTIONS: Reason.TOO_MANY_CONNECTIONS,
        ER.USER_LIMIT_REACHED: Reason.RESOURCE_LIMIT,
        ER.SERVER_SHUTDOWN: Reason.SHUTTING_DOWN,
        ER.NORMAL_SHUTDOWN: Reason.SHUTTING_DOWN,
        ER_CONNECTION_KILLED: Reason.TERMINATED,
        ER_CLIENT_INTERACTION_TIMEOUT: Reason.TERMINATED,
        CR.CR_CONNECTION_ERROR: Reason.CONNECTION_FAILED,
        CR.CR_SERVER_GONE_ERROR: Reason.CONNECTION_DROPPED,
        CR.CR_SERVER_LOST: Reason.CONNECTION_DROPPED,
        ER.BAD_DB_ERROR: Reason.MISSING_DATABASE,
        ER.DBACCESS_DENIED_ERROR: Reason.DATABASE_ACCESS_DENIED,
        ER.HOST_NOT_PRIVILEGED: Reason.HOST_NOT_ALLOWED,
        ER_ACCESS_DENIED_NO_PASSWORD_ERROR: Reason.ACCESS_DENIED,
        ER.NOT_SUPPORTED_AUTH_MODE: Reason.AUTH_METHOD_UNSUPPORTED,
        ER.HOST_IS_BLOCKED: Reason.HOST_BLOCKED,
        CR.CR_SSL_CONNECTION_ERROR: Reason.SERVER_WITHOUT_TLS,
        ER_SECURE_TRANSPORT_REQUIRED: Reason.TLS_REQUIRED,
    }


# PyMySQL's InternalError for a packet out of order: what garbage usually looks like.
ER_PACKET_SEQUENCE = "Packet sequence number wrong"

# The protocol's first bytes (MySQL client/server protocol, "Connection Phase").
_PROTOCOL_V10 = 0x0A
_ERR_PACKET = 0xFF
_CLIENT_SSL = 0x0800
_CAPABILITIES = 0x0200 | _CLIENT_SSL | 0x8000 | 0x80000  # 4.1, SSL, secure auth, plugin auth
_UTF8MB4 = 45
_MAX_GREETING = 1 << 16  # a greeting is about 100 bytes; anything huge is not MySQL


def lock_name(dbname: str) -> str:
    """A ``GET_LOCK`` name (server-wide, so it names the database) of at most 64 chars."""
    name = f"{LOCK_NAME}:{dbname}"
    if len(name) <= _MAX_LOCK_NAME:
        return name
    return f"{LOCK_NAME}:{hashlib.sha256(dbname.encode()).hexdigest()[:40]}"


def quote_identifier(name: str) -> str:
    """``name`` in backquotes, any backquote inside doubled."""
    return "`" + name.replace("`", "``") + "`"


def create_statement(dbname: str, collation: str | None) -> str:
    """``CREATE DATABASE IF NOT EXISTS`` with charset ``utf8mb4`` and ``collation`` (a
    name :func:`bootstrap.load` has checked)."""
    statement = f"CREATE DATABASE IF NOT EXISTS {quote_identifier(dbname)} CHARACTER SET utf8mb4"
    return statement + (f" COLLATE {collation}" if collation else "")


class MySQLFamily:
    """MySQL, MariaDB, Aurora MySQL, TiDB. See :class:`bootstrap.engines.Engine`."""

    name = "mysql"
    title = "MySQL family"
    default_port = 3306
    detection_ports = (3306, 4000)  # 4000: TiDB
    secret_names = ("mysql", "aurora-mysql", "aurora", "mariadb", "tidb")
    url_schemes = ("mysql", "mysql+pymysql", "mariadb")
    artifacts = frozenset({"my_cnf", "wp_config", "profile"})
    default_artifacts: Mapping[str, str] = MappingProxyType({})
    max_key_length = _MAX_KEY
    client = ClientSpec("mysql", ("mariadb", "mysql"), "mariadb-client")

    def dbname_problem(self, dbname: str) -> str | None:
        if len(dbname) > 64:
            return "is longer than 64 characters, the MySQL family's limit"
        if dbname != dbname.rstrip(" "):
            return "ends with a space, which the MySQL family does not allow in a name"
        return None

    def connect(self, target: Target, *, timeout: float, dbname: str | None = None) -> Connection:
        import pymysql  # noqa: PLC0415 - only a MySQL-family boot loads PyMySQL

        context = client_context(target)
        seconds = max(2.0, timeout)
        name = target.dbname if dbname is None else dbname
        try:
            return self._connect(target, name, context, seconds)
        except pymysql.err.OperationalError as exc:
            from pymysql.constants import CR  # noqa: PLC0415

            # 2013 before connect() returned: the greeting never came.
            if exc.args and exc.args[0] == CR.CR_SERVER_LOST and "timed out" in str(exc):
                raise SilentServer(str(exc.args[1])) from None
            raise

    def _connect(self, target: Target, name: str, context: Any, seconds: float) -> Connection:
        import pymysql  # noqa: PLC0415

        connection: Connection = pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            # A str password is sent as Latin-1 by PyMySQL; UTF-8 bytes log in with any.
            password=target.password.reveal().encode("utf-8"),
            # The empty name is "no default database", which every account may use.
            database=name or None,
            ssl=context,
            ssl_disabled=context is None,
            connect_timeout=seconds,
            read_timeout=seconds,
            write_timeout=seconds,
            charset="utf8mb4",
            autocommit=True,
        )
        return connection

    def classify(self, exc: BaseException) -> Failure:
        from pymysql.err import OperationalError  # noqa: PLC0415

        return classify_driver_error(exc, "pymysql", _classify_pymysql, OperationalError)

    def create_database(self, target: Target, collation: str | None, timeout: float) -> Created:
        from pymysql.constants import ER  # noqa: PLC0415
        from pymysql.err import MySQLError  # noqa: PLC0415

        connection = self.connect(target, timeout=timeout, dbname="")
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(create_statement(target.dbname, collation))
            except MySQLError as exc:
                code = exc.args[0] if exc.args else None
                denied = (
                    ER.DBACCESS_DENIED_ERROR,
                    ER.TABLEACCESS_DENIED_ERROR,
                    ER.SPECIFIC_ACCESS_DENIED_ERROR,
                )
                if code in denied:
                    raise may_not_create(target, "CREATE") from None
                if code in (ER.COLLATION_CHARSET_MISMATCH, ER.UNKNOWN_COLLATION):
                    raise ConfigError(
                        [f"CLOUDBOOT_COLLATION {collation} is not a utf8mb4 collation this "
                         "server knows"]
                    ) from None  # fmt: skip
                raise
            # One row affected: created; none (and a note): it was there already.
            return "created" if cursor.rowcount else "exists"
        finally:
            close_quietly(connection)

    def acquire_lock(
        self,
        connection: Connection,
        target: Target,
        on_wait: Callable[[], None],
        timeout: float,
    ) -> bool:
        name = lock_name(target.dbname)
        # One-second GET_LOCK waits in a loop: each must answer within the connection's
        # read timeout (at least 2 s), and MySQL and MariaDB disagree on what a negative
        # (infinite) wait means. A wait ends as soon as the lock is free, so the loop
        # costs a round trip a second, not latency.
        deadline = time.monotonic() + timeout
        wait = 0
        while True:
            (got,) = fetch_one(connection, "SELECT GET_LOCK(%s, %s)", (name, wait)) or (None,)
            if got == 1:
                return True
            if got is None:
                raise UnavailableError(
                    "GET_LOCK failed on the server",
                    hint="the server may be out of memory or killing the session",
                )
            if wait == 0:
                on_wait()
            if time.monotonic() >= deadline:
                return False
            wait = 1

    def bound_lock_session(self, connection: Connection, keepalive: int) -> None:
        # The MySQL family has no per-session TCP keepalive; wait_timeout ends a session
        # idle that long, so the holder sends a query every keepalive / 3 s.
        fetch_one(connection, "SET SESSION wait_timeout = %s", (keepalive,))

    def session_socket(self, connection: Connection) -> int:
        # PyMySQL keeps its socket in _sock (no public accessor).
        return int(connection._sock.fileno())  # type: ignore[attr-defined]

    def create_runs_table(self, connection: Connection, target: Target) -> None:
        from pymysql.constants import ER  # noqa: PLC0415
        from pymysql.err import MySQLError  # noqa: PLC0415

        try:
            connection.cursor().execute(
                f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ("
                f"hook VARCHAR({_MAX_KEY}) NOT NULL, release_id VARCHAR({_MAX_KEY}) NOT NULL, "
                "finished_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
                "PRIMARY KEY (hook, release_id)) CHARACTER SET utf8mb4"
            )
        except MySQLError as exc:
            code = exc.args[0] if exc.args else None
            if code not in (ER.TABLEACCESS_DENIED_ERROR, ER.DBACCESS_DENIED_ERROR):
                raise
            raise RefusedError(
                f"user {target.user} logs in to {target.dbname} but may not create "
                f"cloudboot's table {RUNS_TABLE} there (CREATE command denied)",
                hint=f"grant it: GRANT CREATE, SELECT, INSERT ON "
                f"{quote_identifier(target.dbname)}.* TO the user (or create the table "
                "beforehand and grant SELECT and INSERT on it)",
            ) from None

    def record_run_sql(self) -> str:
        return f"INSERT IGNORE INTO {RUNS_TABLE} (hook, release_id) VALUES (%s, %s)"  # noqa: S608 - constant table name

    def still_starting(self, address: tuple[Any, ...], timeout: float) -> bool | None:
        del address, timeout  # a MySQL-family server listens only once it takes logins
        return None

    def start_tls(self, sock: socket.socket) -> None:
        # The MySQL family greets first; answer with an SSL request packet (the first 32
        # bytes of a handshake response with CLIENT_SSL), after which TLS starts.
        try:
            greeting = _read_packet(sock)
        except TimeoutError:
            # No greeting: a server that waits for the client to speak first.
            host, port = sock.getpeername()[:2]
            other = engine_answering(host, port, "mysql")
            if other is None:
                raise
            raise ConfigError(
                [f"the port belongs to a {other.title} server, not a MySQL-family one"],
                hint="check the port and CLOUDBOOT_ENGINE",
            ) from None
        if greeting[:1] == bytes([_ERR_PACKET]):
            code = int.from_bytes(greeting[1:3], "little")
            message = greeting[3:].decode("utf-8", "replace")
            raise UnavailableError(
                f"the server refused the connection before TLS: {code} {message}",
                hint="1040: too many connections; 1129: the host is blocked (FLUSH HOSTS)",
            )
        capabilities = _greeting_capabilities(greeting)
        if not capabilities & _CLIENT_SSL:
            raise RefusedError(
                "the server does not offer TLS",
                hint="configure ssl-cert and ssl-key on the server, or set "
                "CLOUDBOOT_SSLMODE=disable if plaintext is intended",
            )
        body = struct.pack("<IIB23x", _CAPABILITIES, 1 << 24, _UTF8MB4)
        sock.sendall(len(body).to_bytes(3, "little") + b"\x01" + body)

    def answers(self, sock: socket.socket) -> bool:
        header = sock.recv(5)
        # A protocol-10 greeting: 3 bytes of length, sequence 0, protocol version 10.
        return len(header) == 5 and header[3] == 0 and header[4] == _PROTOCOL_V10

    def session_info(self, connection: Connection) -> tuple[str, str | None]:
        (user,) = fetch_one(connection, "SELECT CURRENT_USER()")
        # SHOW SESSION STATUS: information_schema.SESSION_STATUS is gone in MySQL 8.0.
        row = fetch_one(connection, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        version = row[1] if len(row) > 1 and row[1] else None
        return str(user), None if version is None else str(version)

    def server_info(self, connection: Connection) -> dict[str, Any]:
        version, comment, charset, collation, db_charset, db_collation = fetch_one(
            connection,
            "SELECT VERSION(), @@version_comment, @@character_set_server, "
            "@@collation_server, @@character_set_database, @@collation_database",
        )
        return {
            "version": version,
            "product": comment,
            "server_charset": charset,
            "server_collation": collation,
            "database_charset": db_charset,
            "database_collation": db_collation,
        }

    def client_launch(self, target: Target, *, service_name: str) -> ClientLaunch:
        del service_name  # libpq's notion
        return ClientLaunch(
            # --defaults-file (must come first): only this file, so neither /etc/mysql nor
            # a stale ~/.my.cnf can point the session elsewhere.
            argv=("mariadb", f"--defaults-file={placeholder('my.cnf')}"),
            environment={},
            files={"my.cnf": render_my_cnf(target)},
        )


def _classify_pymysql(exc: BaseException, detail: str) -> Failure | None:
    from pymysql.constants import CR, ER  # noqa: PLC0415

    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code == CR.CR_CONN_HOST_ERROR:
        # Network, DNS and TLS failures all arrive as 2003, the cause attached.
        cause = getattr(exc, "original_exception", None)
        found = classify_os_error(cause, detail) if isinstance(cause, BaseException) else None
        return found or Failure(Reason.CONNECTION_FAILED, detail)
    if code == ER.ACCESS_DENIED_ERROR:
        # MariaDB answers a plaintext login under require_secure_transport with 1045,
        # the same number as a wrong password: say both.
        return Failure(Reason.ACCESS_DENIED, detail, HINT_DENIED_OR_PLAINTEXT)
    if code is None and str(exc.args[0] if exc.args else "").startswith(ER_PACKET_SEQUENCE):
        return Failure(Reason.WRONG_PROTOCOL, detail)
    known = _code_reasons().get(code or 0)
    return None if known is None else Failure(known, detail)


def _wrong_protocol() -> ConfigError:
    return ConfigError(
        ["the server does not speak the MySQL protocol"],
        hint="check the port and CLOUDBOOT_ENGINE: this may be a PostgreSQL server",
    )


def _greeting_capabilities(greeting: bytes) -> int:
    """The low capability bytes of a protocol-10 greeting; a :class:`ConfigError` for
    anything else (another protocol, a truncated or odd packet)."""
    if greeting[:1] != bytes([_PROTOCOL_V10]):
        raise _wrong_protocol()
    end_of_version = greeting.find(b"\0", 1)
    # connection id (4), auth data (8), filler (1), then the low capability bytes (2).
    low = end_of_version + 1 + 13
    if end_of_version < 0 or len(greeting) < low + 2:
        raise _wrong_protocol()
    return int.from_bytes(greeting[low : low + 2], "little")


def _read_packet(sock: socket.socket) -> bytes:
    header = _recv_exactly(sock, 4)
    size = int.from_bytes(header[:3], "little")
    if size > _MAX_GREETING:
        raise _wrong_protocol()
    return _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET, "connection closed by the server")
        data += chunk
    return data


ENGINE = MySQLFamily()
