"""The database itself: create it when missing, and the lock and record hooks run under.

Every connection goes through the retry engine, so a server that drops a connection
right after the wait (PostgreSQL's double "ready") costs a retry. What differs between
the engines is the engine's (:mod:`bootstrap.engines`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import events
from .engines import RUNS_TABLE, Connection, Engine, close_quietly, engine_for
from .errors import CloudbootError, UnavailableError
from .logs import get_logger
from .retry import retrying
from .target import Target


def ensure_database(target: Target, collation: str | None) -> bool:
    """Create the target's database if it does not exist; true when this call made it.

    Race-safe: when many tasks try at once, one creates it and the others find it.
    Raises :class:`~bootstrap.errors.RefusedError` (77) when the user may not create
    databases, :class:`~bootstrap.errors.ConfigError` (78) for a collation the server
    does not know, and what :func:`bootstrap.retry.retrying` raises.
    """
    engine = engine_for(target.engine)

    def operation(timeout: float) -> str:
        return engine.create_database(target, collation, timeout)

    outcome = retrying(operation, target, events=events.DATABASE)
    name = {
        "created": events.DATABASE_CREATED,
        "exists": events.DATABASE_EXISTS,
        "lost_race": events.DATABASE_LOST_RACE,
    }[outcome]
    get_logger().info(name, dbname=target.dbname)
    return outcome == "created"


@dataclass
class Lease:
    """The lock held for one hook on its own connection, and the release record.

    :meth:`done` says whether the hook already completed for ``release`` (always false
    without a release); :meth:`record` marks it completed. Both raise
    :class:`UnavailableError` (69) when the lock's connection is lost.
    """

    connection: Connection
    engine: Engine
    hook: str
    release: str | None

    def done(self) -> bool:
        if self.release is None:
            return False
        query = f"SELECT 1 FROM {RUNS_TABLE} WHERE hook = %s AND release_id = %s"  # noqa: S608 - constant table name
        return self._execute(query).fetchone() is not None

    def record(self) -> None:
        if self.release is not None:
            self._execute(self.engine.record_run_sql())

    def _execute(self, query: str) -> Any:
        cursor = self.connection.cursor()
        try:
            cursor.execute(query, (self.hook, self.release))
        except CloudbootError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error ends the lock alike
            failure = self.engine.classify(exc)
            raise UnavailableError(
                f"the hook lock's database connection failed: {failure.reason.value}",
                hint="the lock is released with the connection; the next task runs the "
                "hook again if it was not recorded",
            ) from None
        return cursor


@contextmanager
def hook_lock(
    target: Target,
    hook: str,
    release: str | None,
    *,
    adopt: Connection | None = None,
) -> Iterator[Lease]:
    """Hold the hooks' database lock on a dedicated connection for the ``with`` body.

    The lock ends with the connection, so a task that dies mid-hook frees it. With a
    ``release`` the record table is created (under the lock, so no two tasks race on
    it). Logs ``cloudboot.hook.lock_wait`` when another task holds the lock and
    ``cloudboot.hook.locked`` once held.

    ``adopt``, an open connection to the database that nothing else uses (the wait's),
    serves the first attempt instead of a new login; it is closed like any other, and
    if it fails the next attempt logs in anew.
    """
    engine = engine_for(target.engine)
    log = get_logger()
    offered = adopt

    def operation(timeout: float) -> Connection:
        nonlocal offered
        connection, offered = offered or engine.connect(target, timeout=timeout), None
        try:
            engine.acquire_lock(
                connection, target, lambda: log.info(events.HOOK_LOCK_WAIT, hook=hook)
            )
            if release is not None:
                engine.create_runs_table(connection)
        except BaseException:
            close_quietly(connection)
            raise
        return connection

    try:
        connection = retrying(operation, target, events=events.HOOK)
    finally:
        if offered is not None:  # never tried: the stage failed before its first attempt
            close_quietly(offered)
    try:
        log.info(events.HOOK_LOCKED, hook=hook)
        yield Lease(connection, engine, hook, release)
    finally:
        close_quietly(connection)  # ends the session, which releases the lock
