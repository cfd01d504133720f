"""Readiness: the database answers an authenticated query over the configured TLS.

Every attempt goes through the retry engine (:mod:`bootstrap.retry`), which decides
what a failure means and how long to wait before the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import events
from .engines import Connection, close_quietly, engine_for
from .failures import Kind
from .logs import get_logger
from .retry import DEFAULT_POLICY, Policy, retrying
from .target import Target


@dataclass(frozen=True)
class Readiness:
    """What the wait found: ``database_exists`` is false when the server logged us in
    but the configured database is missing (only with ``create_missing``).

    ``connection`` is the login that proved it, still open, when the wait was asked to
    keep it and the database exists; whoever asked closes it.
    """

    attempts: int
    elapsed: float
    database_exists: bool
    connection: Connection | None = field(default=None, repr=False, compare=False)


def probe(target: Target, timeout: float, *, create_missing: bool) -> Connection | None:
    """One readiness attempt: log in and run ``select 1``. The connection, still open,
    when done; ``None`` when the login worked but the database is missing and
    ``create_missing`` (the server checks the password before it looks for the
    database)."""
    engine = engine_for(target.engine)
    try:
        connection = engine.connect(target, timeout=timeout)
    except Exception as exc:
        if create_missing and engine.classify(exc).kind is Kind.MISSING_DATABASE:
            return None
        raise
    try:
        cursor = connection.cursor()
        cursor.execute("select 1")
        cursor.fetchall()
    except BaseException:
        close_quietly(connection)
        raise
    return connection


def wait_ready(
    target: Target,
    *,
    create_missing: bool,
    keep: bool = False,
    policy: Policy = DEFAULT_POLICY,
) -> Readiness:
    """Block until the database answers (see :func:`bootstrap.retry.retrying` for what
    ends the wait). A missing database counts as up when ``create_missing``.

    With ``keep`` the connection that answered stays open in
    :attr:`Readiness.connection` (a later stage saves a login by using it). Logs
    ``cloudboot.wait.start``, the retry engine's events and ``cloudboot.wait.ready``.
    """
    log = get_logger()
    log.info(
        events.WAIT_START,
        host=target.host,
        port=target.port,
        dbname=target.dbname,
        sslmode=target.sslmode,
        timeout_s=target.wait_timeout,
    )
    started = policy.clock()
    attempts = 0

    def attempt(timeout: float) -> Connection | None:
        nonlocal attempts
        attempts += 1
        return probe(target, timeout, create_missing=create_missing)

    connection = retrying(attempt, target, events=events.WAIT, policy=policy)
    exists = connection is not None
    if connection is not None and not keep:
        close_quietly(connection)
        connection = None
    elapsed = policy.clock() - started
    log.info(
        events.WAIT_READY, attempts=attempts, elapsed_s=round(elapsed, 3), database_exists=exists
    )
    return Readiness(attempts, elapsed, exists, connection)
