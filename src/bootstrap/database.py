"""The database itself: create it when missing, and the lock and record hooks run under.

Every connection goes through :func:`bootstrap.wait.retrying`, so a server that drops
a connection right after the wait (PostgreSQL's double "ready") costs a retry. Drivers
are imported inside the functions, like in :mod:`bootstrap.connect`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .connect import MAINTENANCE_DBNAME, Connection, classify, close_quietly, connect
from .credentials import DatabaseCredentials
from .errors import CloudbootError, ConfigError, RefusedError, UnavailableError
from .logs import get_logger
from .settings import Settings
from .wait import retrying

RUNS_TABLE = "cloudboot_hook_runs"
"""cloudboot's own table: one row per (hook, release) that completed."""

LOCK_NAME = "cloudboot:hooks"
"""One lock for every locked hook: two different migrations must not interleave either."""

_MAX_KEY = 190  # utf8mb4 VARCHAR(190): a two-column primary key any InnoDB row format takes
_COLLATION = re.compile(r"[A-Za-z0-9_]+")


def quote_mysql_identifier(name: str) -> str:
    """``name`` in backquotes, any backquote inside doubled."""
    return "`" + name.replace("`", "``") + "`"


def mysql_create_statement(dbname: str, collation: str | None) -> str:
    """``CREATE DATABASE IF NOT EXISTS`` with charset ``utf8mb4`` and ``collation``."""
    statement = f"CREATE DATABASE IF NOT EXISTS {quote_mysql_identifier(dbname)} "
    statement += "CHARACTER SET utf8mb4"
    if collation:
        if not _COLLATION.fullmatch(collation):
            raise ConfigError(["CLOUDBOOT_COLLATION must be a collation name such as utf8mb4_bin"])
        statement += f" COLLATE {collation}"
    return statement


def advisory_key(name: str) -> int:
    """A stable signed 64-bit ``pg_advisory_lock`` key for ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_lock_name(dbname: str) -> str:
    """A ``GET_LOCK`` name (server-wide, so it names the database) of at most 64 chars."""
    name = f"{LOCK_NAME}:{dbname}"
    if len(name) <= 64:
        return name
    return f"{LOCK_NAME}:{hashlib.sha256(dbname.encode()).hexdigest()[:40]}"


# --- ensure the database -------------------------------------------------------------


def ensure_database(
    credentials: DatabaseCredentials, settings: Settings, environ: Mapping[str, str]
) -> bool:
    """Create ``credentials.dbname`` if it does not exist; true when this call made it.

    Race-safe: when many tasks try at once, one creates it and the others find it.
    Raises :class:`RefusedError` (77) when the user may not create databases,
    :class:`ConfigError` (78) for a bad collation, and what :func:`retrying` raises.
    """
    if credentials.engine == "postgres":

        def operation(timeout: float) -> bool:
            return _create_postgres(credentials, settings, environ, timeout)
    else:

        def operation(timeout: float) -> bool:
            return _create_mysql(credentials, settings, environ, timeout)

    created = retrying(operation, credentials, settings, stage="database")
    get_logger().info(
        "cloudboot.database.created" if created else "cloudboot.database.exists",
        dbname=credentials.dbname,
    )
    return created


def _create_postgres(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    timeout: float,
) -> bool:
    from psycopg import errors, sql  # noqa: PLC0415 - only the postgres boot loads psycopg

    connection = _maintenance_postgres(credentials, settings, environ, timeout)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (credentials.dbname,))
        if cursor.fetchone():
            return False
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(credentials.dbname))
        try:
            cursor.execute(statement)
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            # Another task created it between our check and our CREATE.
            get_logger().debug("cloudboot.database.lost_race", dbname=credentials.dbname)
            return False
        except errors.InsufficientPrivilege:
            raise RefusedError(
                f"user {credentials.username} may not create database {credentials.dbname}",
                hint="create the database beforehand, or grant CREATEDB to the user",
            ) from None
        return True
    finally:
        close_quietly(connection)


def _maintenance_postgres(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    timeout: float,
) -> Connection:
    """A connection to ``postgres``, or ``template1`` where ``postgres`` was dropped."""
    try:
        return connect(
            credentials, settings, environ, dbname=MAINTENANCE_DBNAME["postgres"], timeout=timeout
        )
    except Exception as exc:
        if classify(exc).kind != "missing_database":
            raise
    return connect(credentials, settings, environ, dbname="template1", timeout=timeout)


def _create_mysql(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    timeout: float,
) -> bool:
    import pymysql  # noqa: PLC0415 - only the MySQL-family boot loads PyMySQL

    statement = mysql_create_statement(credentials.dbname, settings.collation)
    connection = connect(
        credentials, settings, environ, dbname=MAINTENANCE_DBNAME["mysql"], timeout=timeout
    )
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(statement)
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else None
            if code in (1044, 1142, 1227):
                raise RefusedError(
                    f"user {credentials.username} may not create database {credentials.dbname}",
                    hint="create the database beforehand, or grant CREATE to the user",
                ) from None
            if code in (1253, 1273):
                raise ConfigError(
                    [
                        f"CLOUDBOOT_COLLATION {settings.collation} is not a utf8mb4 collation "
                        "this server knows"
                    ]
                ) from None
            raise
        # One row affected: created; none (and a note): it was there already.
        return bool(cursor.rowcount)
    finally:
        close_quietly(connection)


# --- the hook lock and the once-per-release record -----------------------------------


@dataclass
class Lease:
    """The lock held for one hook on its own connection, and the release record.

    :meth:`done` says whether the hook already completed for ``release`` (always false
    without a release); :meth:`record` marks it completed. Both raise
    :class:`UnavailableError` (69) when the lock's connection is lost.
    """

    connection: Any
    engine: str
    hook: str
    release: str | None

    def done(self) -> bool:
        if self.release is None:
            return False
        query = f"SELECT 1 FROM {RUNS_TABLE} WHERE hook = %s AND release_id = %s"  # noqa: S608 - constant table name
        return self._execute(query).fetchone() is not None

    def record(self) -> None:
        if self.release is None:
            return
        verb = "INSERT INTO" if self.engine == "postgres" else "INSERT IGNORE INTO"
        tail = " ON CONFLICT DO NOTHING" if self.engine == "postgres" else ""
        self._execute(f"{verb} {RUNS_TABLE} (hook, release_id) VALUES (%s, %s){tail}")

    def _execute(self, query: str) -> Any:
        cursor = self.connection.cursor()
        try:
            cursor.execute(query, (self.hook, self.release))
        except CloudbootError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error ends the lock alike
            failure = classify(exc)
            raise UnavailableError(
                f"the hook lock's database connection failed: {failure.reason}",
                hint="the lock is released with the connection; the next task runs the "
                "hook again if it was not recorded",
            ) from None
        return cursor


_CREATE_RUNS = {
    "postgres": f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ("
    "hook text NOT NULL, release_id text NOT NULL, "
    "finished_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (hook, release_id))",
    "mysql": f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ("
    f"hook VARCHAR({_MAX_KEY}) NOT NULL, release_id VARCHAR({_MAX_KEY}) NOT NULL, "
    "finished_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
    "PRIMARY KEY (hook, release_id)) CHARACTER SET utf8mb4",
}


@contextmanager
def hook_lock(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    hook: str,
    *,
    adopt: Connection | None = None,
) -> Iterator[Lease]:
    """Hold the hooks' database lock on a dedicated connection for the ``with`` body.

    PostgreSQL: ``pg_advisory_lock`` (per database); MySQL family: ``GET_LOCK`` with a
    name holding the database's. The lock ends with the connection, so a task that dies
    mid-hook frees it. With ``settings.release`` the record table is created (under the
    lock, so no two tasks race on it). Logs ``cloudboot.hook.lock_wait`` when another
    task holds the lock and ``cloudboot.hook.locked`` once held.

    ``adopt``, an open connection to the database that nothing else uses (the wait's),
    serves the first attempt instead of a new login; it is closed like any other, and
    if it fails the next attempt logs in anew.
    """
    spare = [] if adopt is None else [adopt]
    if settings.release is not None and (len(settings.release) > _MAX_KEY or len(hook) > _MAX_KEY):
        for connection in spare:
            close_quietly(connection)
        raise ConfigError(
            [f"CLOUDBOOT_RELEASE and hook names are limited to {_MAX_KEY} characters"]
        )

    def operation(timeout: float) -> Any:
        if spare:
            connection = spare.pop()
        else:
            connection = connect(credentials, settings, environ, timeout=timeout)
        try:
            _acquire(connection, credentials, hook)
            if settings.release is not None:
                connection.cursor().execute(_CREATE_RUNS[credentials.engine])
        except BaseException:
            close_quietly(connection)
            raise
        return connection

    connection = retrying(operation, credentials, settings, stage="hook")
    try:
        get_logger().info("cloudboot.hook.locked", hook=hook)
        yield Lease(connection, credentials.engine, hook, settings.release)
    finally:
        close_quietly(connection)  # ends the session, which releases the lock


def _acquire(connection: Any, credentials: DatabaseCredentials, hook: str) -> None:
    cursor = connection.cursor()
    log = get_logger()
    if credentials.engine == "postgres":
        key = advisory_key(LOCK_NAME)
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = cursor.fetchone()
        if not (row and row[0]):
            log.info("cloudboot.hook.lock_wait", hook=hook)
            cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
        return
    name = mysql_lock_name(credentials.dbname)
    # One-second GET_LOCK waits in a loop: each must answer within the connection's
    # read timeout (at least 2 s), and MySQL and MariaDB disagree on what a negative
    # (infinite) wait means. A wait ends as soon as the lock is free, so the loop
    # costs a round trip a second, not latency.
    first = True
    while True:
        cursor.execute("SELECT GET_LOCK(%s, %s)", (name, 0 if first else 1))
        row = cursor.fetchone()
        if row and row[0] == 1:
            return
        if not row or row[0] is None:
            raise RuntimeError("GET_LOCK failed on the server")
        if first:
            log.info("cloudboot.hook.lock_wait", hook=hook)
        first = False
