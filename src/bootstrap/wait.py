"""Readiness: retry until the database answers an authenticated query over the configured
TLS, or give up with the right exit code. The only module that imports tenacity.

Between full attempts, while the port is closed, cheap TCP probes (a connect and a close,
every ``probe_interval``) watch it; the next full attempt starts as soon as the port
opens, so the boot goes on within milliseconds of the database accepting logins
without a TLS handshake every few milliseconds against a cold database. Once the port
is open but the server still says no (starting up, too many connections), plain
backoff with jitter takes over, starting again from its first, short delay.

Every connection a boot makes goes through :func:`retrying`, not only the first: a
PostgreSQL that says "ready" and restarts right after (its first start) costs a retry,
not the boot.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import tenacity

from .connect import NETWORK_REASONS, Connection, Failure, classify, close_quietly, connect
from .credentials import DatabaseCredentials
from .errors import CloudbootError, RefusedError, UnavailableError
from .logs import get_logger
from .settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """How fast to retry. Tests pass their own ``clock``/``sleep``/``rand`` and delays.

    A failure's delay is ``min(max_delay, first_delay * 2**(streak-1))`` scaled by a
    random factor in [0.5, 1), where ``streak`` counts the failures in a row of the same
    phase (port closed, or port open and server refusing).
    """

    first_delay: float = 0.05
    max_delay: float = 2.0
    probe_interval: float = 0.015
    max_auth_attempts: int = 3
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Readiness:
    """What the wait found: ``database_exists`` is false when the server logged us in
    but the configured database is missing (only with ``create_database``).

    ``connection`` is the login that proved it, still open, when the wait was asked to
    keep it and the database exists; whoever asked closes it.
    """

    attempts: int
    elapsed: float
    database_exists: bool
    connection: Connection | None = field(default=None, repr=False, compare=False)


def backoff_delay(streak: int, policy: Policy) -> float:
    """The pause after the ``streak``-th failure in a row of one phase (``streak`` ≥ 1)."""
    ceiling = min(policy.max_delay, policy.first_delay * 2.0 ** min(streak - 1, 30))
    return ceiling * (0.5 + policy.rand() / 2)


def port_closed(failure: Failure) -> bool:
    """Whether the failure happened before any TCP connection (probes can watch it)."""
    return failure.kind == "retryable" and failure.reason in NETWORK_REASONS


def wait_for_port(address: tuple[Any, ...], budget: float, policy: Policy = DEFAULT_POLICY) -> bool:
    """Probe ``address`` (a ``getaddrinfo`` entry) with TCP connects every
    ``probe_interval`` for up to ``budget`` seconds; true as soon as one succeeds.

    A connect still in progress is waited for, not restarted, so a host that drops
    packets sees one connection attempt, not one per interval.
    """
    family, _type, _proto, _name, sockaddr = address
    end = policy.clock() + budget
    while (remaining := end - policy.clock()) > 0:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            error = sock.connect_ex(sockaddr)
            if error in (errno.EINPROGRESS, errno.EAGAIN):
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
                done = poller.poll(max(1, int(remaining * 1000)))
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if done else -1
            if error == 0:
                return True
        policy.sleep(max(0.0, min(policy.probe_interval, end - policy.clock())))
    return False


def _first_address(host: str, port: int) -> tuple[Any, ...] | None:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, IndexError):
        return None


class _Retry(Exception):
    """A failed attempt worth another; only tenacity sees it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


@dataclass
class _Progress:
    """One updating terminal line: elapsed against the deadline and the last error."""

    stream: TextIO | None
    deadline: float
    what: str
    shown: bool = False

    def show(self, elapsed: float, failure: Failure) -> None:
        if self.stream is not None:
            line = (
                f"waiting for {self.what}: {elapsed:5.1f} s of {self.deadline:g} s, "
                f"last: {failure.kind} ({failure.reason})"
            )
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        """Erase the line (at the end of the wait: the next log line starts clean)."""
        if self.stream is not None and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def progress_stream(settings: Settings, stream: TextIO | None = None) -> TextIO | None:
    """``stream`` (stderr) when the updating line is wanted: a terminal with console
    logs below debug level; ``None`` otherwise (JSON logs, or debug, get one event per
    attempt instead, and a line of their own each)."""
    stream = stream or sys.stderr
    if not stream.isatty() or settings.log_format == "json" or settings.log_level == "debug":
        return None
    return stream


@dataclass
class _Attempts:
    """State of one retry loop, fed to tenacity as its stop, wait, sleep and log hooks."""

    stage: str
    credentials: DatabaseCredentials
    timeout: float
    connect_timeout: float
    policy: Policy
    progress: _Progress
    started: float = 0.0
    number: int = 0
    auth_failures: int = 0
    streak: int = 0
    last: Failure | None = None
    log: Any = field(default_factory=get_logger)

    def elapsed(self) -> float:
        return self.policy.clock() - self.started

    def remaining(self) -> float:
        return self.timeout - self.elapsed()

    def run(self, operation: Callable[[float], T]) -> T:
        self.number += 1
        self.log.debug(
            f"cloudboot.{self.stage}.attempt",
            attempt=self.number,
            elapsed_s=round(self.elapsed(), 3),
        )
        try:
            return operation(min(self.connect_timeout, max(1.0, self.remaining())))
        except CloudbootError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is classified
            failure = classify(exc)
        raise self._settle(failure)

    def _settle(self, failure: Failure) -> Exception:
        """The exception that ends this attempt: a retry, or a refusal that ends all."""
        where = f"{self.credentials.host}:{self.credentials.port}"
        if failure.kind == "tls":
            return RefusedError(f"TLS with {where} failed: {failure.reason}", hint=failure.hint)
        if failure.kind == "auth":
            self.auth_failures += 1
            if self.auth_failures >= self.policy.max_auth_attempts:
                return RefusedError(
                    f"{where} refused the login {self.auth_failures} times: {failure.reason}",
                    hint=failure.hint,
                )
        elif failure.kind == "missing_database":
            return UnavailableError(
                f"database {self.credentials.dbname} does not exist on {where}",
                hint=failure.hint,
            )
        elif failure.kind != "retryable":
            return UnavailableError(f"{where}: {failure.reason}", hint=failure.hint)
        phase_changed = self.last is None or port_closed(self.last) != port_closed(failure)
        self.streak = 1 if phase_changed else self.streak + 1
        self.last = failure
        return _Retry(failure)

    def stop(self, _state: tenacity.RetryCallState) -> bool:
        return self.remaining() <= 0

    def wait(self, _state: tenacity.RetryCallState) -> float:
        return max(0.0, min(backoff_delay(self.streak, self.policy), self.remaining()))

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        assert self.last is not None  # noqa: S101 - set by the failed attempt
        elapsed = self.elapsed()
        level = "debug" if self.progress.stream else "info"
        getattr(self.log, level)(
            f"cloudboot.{self.stage}.retry",
            attempt=self.number,
            error_class=self.last.kind,
            reason=self.last.reason,
            detail=self.last.detail,
            elapsed_s=round(elapsed, 3),
            retry_in_s=round(state.upcoming_sleep, 3),
        )
        self.progress.show(elapsed, self.last)

    def sleep(self, seconds: float) -> None:
        address = None
        if self.last is not None and port_closed(self.last):
            address = _first_address(self.credentials.host, self.credentials.port)
        if address is None:
            self.policy.sleep(seconds)
        elif wait_for_port(address, seconds, self.policy):
            self.log.debug(f"cloudboot.{self.stage}.port_open", elapsed_s=round(self.elapsed(), 3))


def retrying(
    operation: Callable[[float], T],
    credentials: DatabaseCredentials,
    settings: Settings,
    *,
    stage: str,
    timeout: float | None = None,
    policy: Policy = DEFAULT_POLICY,
    progress: TextIO | None = None,
) -> T:
    """``operation(connect_timeout)``'s result, retried on retryable failures.

    ``operation`` opens its own connection(s) with the timeout it is given; any driver
    exception it raises is classified. Raises :class:`RefusedError` (77) at once on a
    TLS failure and after ``max_auth_attempts`` refused logins, :class:`UnavailableError`
    (69) at once on a fatal failure or a missing database and when ``timeout`` (default
    ``settings.wait_timeout``) runs out. A :class:`CloudbootError` from ``operation``
    passes through. Logs ``cloudboot.<stage>.attempt`` and ``cloudboot.<stage>.retry``.
    """
    limit = settings.wait_timeout if timeout is None else timeout
    where = f"{credentials.host}:{credentials.port}"
    attempts = _Attempts(
        stage=stage,
        credentials=credentials,
        timeout=limit,
        connect_timeout=settings.connect_timeout,
        policy=policy,
        progress=_Progress(progress, limit, where),
        started=policy.clock(),
    )
    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Retry),
        stop=attempts.stop,
        wait=attempts.wait,
        sleep=attempts.sleep,
        before_sleep=attempts.before_sleep,
        reraise=True,
    )
    try:
        result: T = retryer(attempts.run, operation)
    except _Retry as exc:
        attempts.log.warning(
            f"cloudboot.{stage}.gave_up",
            attempts=attempts.number,
            error_class=exc.failure.kind,
            reason=exc.failure.reason,
            elapsed_s=round(attempts.elapsed(), 3),
        )
        raise UnavailableError(
            f"{where} did not answer within {limit:g} s ({attempts.number} attempts; "
            f"last: {exc.failure.reason})",
            hint=exc.failure.hint
            or "is the database running and reachable from here? "
            "raise CLOUDBOOT_WAIT_TIMEOUT for a database that resumes slowly",
        ) from None
    finally:
        attempts.progress.clear()
    return result


def probe(
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    timeout: float,
) -> Connection | None:
    """One readiness attempt: log in and run ``select 1``. The connection, still open,
    when done; ``None`` when the login worked but the database is missing and
    ``create_database`` is on (the server checks the password before it looks for the
    database)."""
    try:
        connection = connect(credentials, settings, environ, timeout=timeout)
    except Exception as exc:
        if settings.create_database and classify(exc).kind == "missing_database":
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
    credentials: DatabaseCredentials,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    keep: bool = False,
    policy: Policy = DEFAULT_POLICY,
) -> Readiness:
    """Block until the database answers (see :func:`retrying` for what ends the wait).

    With ``keep`` the connection that answered stays open in
    :attr:`Readiness.connection` (a later stage saves a login by using it). Logs
    ``cloudboot.wait.start``, an attempt and a retry event per attempt (on a terminal
    with console logs, one updating line instead) and ``cloudboot.wait.ready``.
    """
    log = get_logger()
    log.info(
        "cloudboot.wait.start",
        host=credentials.host,
        port=credentials.port,
        dbname=credentials.dbname,
        sslmode=settings.sslmode,
        timeout_s=settings.wait_timeout,
    )
    started = policy.clock()
    counter = [0]

    def attempt(timeout: float) -> Connection | None:
        counter[0] += 1
        return probe(credentials, settings, environ, timeout)

    connection = retrying(
        attempt,
        credentials,
        settings,
        stage="wait",
        policy=policy,
        progress=progress_stream(settings),
    )
    exists = connection is not None
    if connection is not None and not keep:
        close_quietly(connection)
        connection = None
    elapsed = policy.clock() - started
    log.info(
        "cloudboot.wait.ready",
        attempts=counter[0],
        elapsed_s=round(elapsed, 3),
        database_exists=exists,
    )
    return Readiness(counter[0], elapsed, exists, connection)
