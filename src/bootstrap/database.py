"""The database itself: create it when missing, and the lock and record hooks run under.

Every connection goes through the retry engine, so a server that drops a connection
right after the wait (PostgreSQL's double "ready") costs a retry. What differs between
the engines is the engine's (:mod:`bootstrap.engines`).
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import events, stop
from .engines import (
    RUNS_TABLE,
    Connection,
    Engine,
    close_quietly,
    engine_for,
    fetch_one,
    watch_socket,
)
from .errors import CloudbootError, LockTimeoutError, UnavailableError
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


HANDOVER_PAUSE = 0.5
"""Seconds a task that had to wait for the lock pauses before it runs the hook: a
holder whose session the server ended (killed, restarted) sees it within
:data:`bootstrap.hooks.LOCK_CHECK_INTERVAL` and has stopped its hook by then."""


@dataclass
class Lease:
    """The lock held for one hook on its own connection, and the release record.

    :meth:`done` says whether the hook already completed for ``release`` (always false
    without a release); :meth:`record` marks it completed. Both raise
    :class:`UnavailableError` (69) when the lock's connection is lost. :meth:`lost`
    watches the session while the hook runs.
    """

    connection: Connection
    engine: Engine
    hook: str
    release: str | None
    contended: bool = False
    keepalive: float = 30.0
    _next_query: float = 0.0
    _lost: str | None = None

    def done(self) -> bool:
        if self.release is None:
            return False
        query = f"SELECT 1 FROM {RUNS_TABLE} WHERE hook = %s AND release_id = %s"  # noqa: S608 - constant table name
        return self._execute(query).fetchone() is not None

    def record(self) -> None:
        if self.release is not None:
            self._execute(self.engine.record_run_sql())

    def hand_over(self) -> None:
        if self.contended:
            stop.sleep(HANDOVER_PAUSE)
        self._next_query = time.monotonic() + self.keepalive / 3

    def lost(self) -> str | None:
        """Why the session that holds the lock is gone, or ``None`` while it lives.

        Cheap: a ``poll`` of the session's socket (client-side keepalives make a
        vanished server or path show there within seconds; a session the server ended
        shows at once), and a ``SELECT 1`` when the socket has news or every third of
        the keepalive bound (the MySQL family's ``wait_timeout`` needs that)."""
        if self._lost is not None:
            return self._lost
        try:
            fd = self.engine.session_socket(self.connection)
        except Exception:  # noqa: BLE001 - a closed connection has no socket
            self._lost = "the connection is closed"
            return self._lost
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        news = bool(poller.poll(0))
        if news or time.monotonic() >= self._next_query:
            self._next_query = time.monotonic() + self.keepalive / 3
            try:
                stop.call(lambda: fetch_one(self.connection, "SELECT 1"))
            except CloudbootError:
                raise
            except Exception as exc:  # noqa: BLE001 - any driver error ends the lock alike
                self._lost = self.engine.classify(exc).reason.value
        return self._lost

    def _execute(self, query: str) -> Any:
        cursor = self.connection.cursor()
        try:
            stop.call(lambda: cursor.execute(query, (self.hook, self.release)))
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
    lock_timeout: float = 1800.0,
    keepalive: int = 30,
) -> Iterator[Lease]:
    """Hold the hooks' database lock on a dedicated connection for the ``with`` body.

    The lock ends with the connection, so a task that dies mid-hook frees it; the
    session is bounded (:meth:`~bootstrap.engines.Engine.bound_lock_session`) so that
    the server also ends it within ``keepalive`` seconds of its client vanishing
    without a word. With a ``release`` the record table is created (under the lock, so
    no two tasks race on it). Raises :class:`LockTimeoutError` (75) when another task
    held the lock for ``lock_timeout`` seconds. Logs ``cloudboot.hook.lock_wait`` when
    another task holds the lock and ``cloudboot.hook.locked`` once held.

    ``adopt``, an open connection to the database that nothing else uses (the wait's),
    serves the first attempt instead of a new login; it is closed like any other, and
    if it fails the next attempt logs in anew.
    """
    engine = engine_for(target.engine)
    log = get_logger()
    offered = adopt
    waited: list[bool] = []

    def on_wait() -> None:
        waited.append(True)
        log.info(events.HOOK_LOCK_WAIT, hook=hook, timeout_s=lock_timeout)

    def operation(timeout: float) -> Connection:
        nonlocal offered
        connection, offered = offered or engine.connect(target, timeout=timeout), None
        try:
            engine.bound_lock_session(connection, keepalive)
            watch_socket(engine.session_socket(connection))
            if not engine.acquire_lock(connection, target, on_wait, lock_timeout):
                log.warning(events.HOOK_LOCK_TIMEOUT, hook=hook, timeout_s=lock_timeout)
                raise _lock_timed_out(hook, lock_timeout)  # noqa: TRY301 - closes below
            if release is not None:
                engine.create_runs_table(connection, target)
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
        yield Lease(connection, engine, hook, release, bool(waited), keepalive)
    finally:
        close_quietly(connection)  # ends the session, which releases the lock


def _lock_timed_out(hook: str, lock_timeout: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"another task held the hooks' lock for more than {lock_timeout:g} s "
        f"(CLOUDBOOT_LOCK_TIMEOUT); hook {hook!r} did not run",
        hint="a long migration may still be running in another task: raise "
        "CLOUDBOOT_LOCK_TIMEOUT, or find the task that holds the lock",
    )
