"""The retry engine every stage that connects uses (the wait, ensuring the database,
the hook locks): attempts, backoff with jitter, a deadline, and what each failure
means. The only module that imports tenacity.

Between full attempts, while the port is closed, cheap TCP probes (a connect and a
close, every ``probe_interval``) watch it; the next full attempt starts as soon as the
port opens, so a stage goes on within milliseconds of the database accepting logins
without a TLS handshake every few milliseconds against a cold database. Once the port
is open but the server still says no (starting up, too many connections), plain backoff
with jitter takes over, starting again from its first, short delay.
"""

from __future__ import annotations

import contextlib
import errno
import random
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity

from . import stop
from .engines import Engine, engine_for, identified, needs_identifying, other_engine_at
from .errors import CloudbootError, ConfigError, RefusedError, UnavailableError
from .events import StageEvents
from .failures import Failure, Kind, Reason, tailored
from .logs import get_logger
from .target import Target

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """How fast to retry. Tests pass their own ``clock``/``sleep``/``rand`` and delays.

    A failure's delay is ``min(max_delay, first_delay * 2**(streak-1))`` scaled by a
    random factor in [0.5, 1), where ``streak`` counts the failures in a row of the same
    phase (port closed, or port open and server refusing). While a server says it is
    starting up, the engine's cheap probe asks again every ``startup_interval``, slowed
    by half again per probe after ``startup_slowdown_after`` seconds, up to
    ``startup_max_interval`` (each probe is a line in the server's log).
    """

    first_delay: float = 0.05
    max_delay: float = 2.0
    probe_interval: float = 0.005
    startup_interval: float = 0.005
    startup_slowdown_after: float = 1.0
    startup_max_interval: float = 0.1
    max_auth_attempts: int = 3
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = stop.sleep
    rand: Callable[[], float] = random.random


DEFAULT_POLICY = Policy()


def backoff_delay(streak: int, policy: Policy) -> float:
    """The pause after the ``streak``-th failure in a row of one phase (``streak`` ≥ 1)."""
    ceiling = min(policy.max_delay, policy.first_delay * 2.0 ** min(streak - 1, 30))
    return ceiling * (0.5 + policy.rand() / 2)


def wait_for_port(address: tuple[Any, ...], budget: float, policy: Policy = DEFAULT_POLICY) -> bool:
    """Probe ``address`` (a ``getaddrinfo`` entry) with TCP connects every
    ``probe_interval`` for up to ``budget`` seconds; true as soon as one succeeds.

    A connect still in progress is waited for, not restarted, so a host that drops
    packets sees one connection attempt, not one per interval.
    """
    family, _type, _proto, _name, sockaddr = address
    end = policy.clock() + budget
    while end - policy.clock() > 0:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            error = sock.connect_ex(sockaddr)
            if error in (errno.EINPROGRESS, errno.EAGAIN):
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
                done: list[Any] = []
                while not done and (left := end - policy.clock()) > 0:
                    stop.check()  # a host that drops packets must not hold a signal back
                    done = poller.poll(max(1, int(min(left, stop.TICK) * 1000)))
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
        super().__init__(failure.reason.value)
        self.failure = failure


@dataclass
class _Attempts:
    """State of one retry loop, fed to tenacity as its stop, wait, sleep and log hooks."""

    events: StageEvents
    target: Target
    engine: Engine
    timeout: float
    policy: Policy
    started: float = 0.0
    number: int = 0
    auth_failures: int = 0
    streak: int = 0
    last: Failure | None = None
    other: str | None = None
    log: Any = field(default_factory=get_logger)

    def elapsed(self) -> float:
        return self.policy.clock() - self.started

    def remaining(self) -> float:
        return self.timeout - self.elapsed()

    def run(self, operation: Callable[[float], T]) -> T:
        self.number += 1
        self.log.debug(self.events.attempt, attempt=self.number, elapsed_s=self._elapsed())
        timeout = min(self.target.connect_timeout, max(1.0, self.remaining()))
        try:
            # In a worker thread: a connect or a lock wait inside the driver cannot hold
            # a signal back (bootstrap.stop.call); a late connection is closed.
            return stop.call(lambda: operation(timeout), discard=_close_late)
        except CloudbootError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is classified
            failure = self._identified(self.engine.classify(exc))
        raise self._settle(tailored(failure, self.target))

    def _identified(self, failure: Failure) -> Failure:
        """A server that says nothing or speaks another protocol: when it is the other
        engine's, a configuration error at once rather than a wait until the deadline."""
        if not needs_identifying(failure):
            return failure
        if self.other is None:
            other = other_engine_at(self.target)
            self.other = other.title if other else ""
        return identified(failure, self.target, self.other)

    def _elapsed(self) -> float:
        return round(self.elapsed(), 3)

    def _settle(self, failure: Failure) -> Exception:
        """The exception that ends this attempt: a retry, or a failure that ends all."""
        if failure.kind is Kind.AUTH:
            self.auth_failures += 1
            if self.auth_failures < self.policy.max_auth_attempts:
                return self._retry(failure)
        elif failure.kind is Kind.RETRYABLE:
            return self._retry(failure)
        self.gave_up(failure)
        return _final_error(failure, self.target, self.auth_failures)

    def _retry(self, failure: Failure) -> _Retry:
        phase_changed = self.last is None or self.last.port_closed != failure.port_closed
        self.streak = 1 if phase_changed else self.streak + 1
        self.last = failure
        return _Retry(failure)

    def gave_up(self, failure: Failure) -> None:
        self.log.warning(
            self.events.gave_up,
            attempt=self.number,
            error_class=failure.kind.value,
            reason=failure.reason.value,
            elapsed_s=self._elapsed(),
        )

    def stop(self, _state: tenacity.RetryCallState) -> bool:
        return self.remaining() <= 0

    def wait(self, _state: tenacity.RetryCallState) -> float:
        return max(0.0, min(backoff_delay(self.streak, self.policy), self.remaining()))

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        assert self.last is not None  # noqa: S101 - set by the failed attempt
        self.log.info(
            self.events.retry,
            attempt=self.number,
            error_class=self.last.kind.value,
            reason=self.last.reason.value,
            detail=self.last.detail,
            elapsed_s=self._elapsed(),
            retry_in_s=round(state.upcoming_sleep, 3),
            timeout_s=self.timeout,
        )

    def sleep(self, seconds: float) -> None:
        last = self.last
        starting = last is not None and last.reason is Reason.STARTING_UP
        address = None
        if last is not None and (last.port_closed or starting):
            address = _first_address(self.target.host, self.target.port)
        if address is None:
            self.policy.sleep(seconds)
        elif starting:
            self._until_accepting(address)
        elif wait_for_port(address, seconds, self.policy):
            self.log.debug(self.events.port_open, elapsed_s=self._elapsed())
            # A port that just opened is most often a server still starting up: ask
            # cheaply before a whole TLS login is spent on it.
            self._until_accepting(address)

    def _until_accepting(self, address: tuple[Any, ...]) -> None:
        """Probe until the server no longer says it is starting up (or cannot say)."""
        interval = self.policy.startup_interval
        since = self.policy.clock()
        while self.remaining() > 0:
            stop.check()
            began = self.policy.clock()
            timeout = min(1.0, max(0.1, self.remaining()))
            answer = self.engine.still_starting(address, timeout)
            if answer is None:
                return  # the engine cannot tell: the next full attempt will
            if answer is False:
                self.log.debug(self.events.accepting, elapsed_s=self._elapsed())
                return
            if began - since > self.policy.startup_slowdown_after:
                interval = min(self.policy.startup_max_interval, interval * 1.5)
            pause = began + interval - self.policy.clock()
            self.policy.sleep(max(0.0, min(pause, self.remaining())))


def _close_late(result: object) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _final_error(failure: Failure, target: Target, auth_failures: int) -> CloudbootError:
    where = target.address
    reason = failure.reason.value
    if failure.kind is Kind.TLS:
        return RefusedError(f"TLS with {where} failed: {reason}", hint=failure.hint)
    if failure.kind is Kind.AUTH:
        return RefusedError(
            f"{where} refused the login {auth_failures} times: {reason}", hint=failure.hint
        )
    if failure.kind is Kind.MISSING_DATABASE:
        return UnavailableError(
            f"database {target.dbname} does not exist on {where}", hint=failure.hint
        )
    if failure.kind is Kind.CONFIG:
        return ConfigError([f"{where}: {reason}"], hint=failure.hint)
    text = f"{where}: {reason}"
    return UnavailableError(
        f"{text} ({failure.detail})" if failure.detail else text, hint=failure.hint
    )


def retrying(
    operation: Callable[[float], T],
    target: Target,
    *,
    events: StageEvents,
    timeout: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> T:
    """``operation(connect_timeout)``'s result, retried on retryable failures.

    ``operation`` opens its own connection(s) with the timeout it is given; any driver
    exception it raises is classified by the target's engine. Raises
    :class:`RefusedError` (77) at once on a TLS failure and after ``max_auth_attempts``
    refused logins, :class:`ConfigError` (78) for a setting that cannot work,
    :class:`UnavailableError` (69) at once on a fatal failure or a missing database and
    when ``timeout`` (default ``target.wait_timeout``) runs out. A
    :class:`CloudbootError` from ``operation`` passes through. Logs the stage's
    ``attempt`` (debug), ``retry`` and ``gave_up`` events.
    """
    limit = target.wait_timeout if timeout is None else timeout
    attempts = _Attempts(
        events=events,
        target=target,
        engine=engine_for(target.engine),
        timeout=limit,
        policy=policy,
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
        attempts.gave_up(exc.failure)
        raise UnavailableError(
            f"{target.address} did not answer within {limit:g} s ({attempts.number} attempts; "
            f"last: {exc.failure.reason.value})",
            hint=exc.failure.hint
            or "is the database running and reachable from here? "
            "raise CLOUDBOOT_WAIT_TIMEOUT for a database that resumes slowly",
        ) from None
    return result
