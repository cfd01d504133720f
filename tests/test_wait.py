"""Readiness: classification of driver errors, the backoff rules, and ``cloudboot wait``
against the throwaway TLS servers (both engines): late start, restart right after the
first login, a connection dropped after the wait, refusals, deadline and SIGTERM."""

from __future__ import annotations

import contextlib
import re
import select
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

import bootstrap
from bootproc import Target, finish, make_target, read_until, run, run_on_a_terminal, start
from bootstrap import events, load
from bootstrap.engines import engine_for
from bootstrap.errors import RefusedError, UnavailableError
from bootstrap.failures import Failure, Reason
from bootstrap.retry import Policy, backoff_delay, retrying, wait_for_port
from bootstrap.secret import Secret
from bootstrap.target import SslMode
from bootstrap.tls import TlsSetupError, client_context
from factories import rds_secret, unit_target
from leakguard import assert_no_secret, register_secret
from readers import clean_env
from servers import (
    HOST,
    MISMATCH_HOST,
    Certificates,
    MariaDBServer,
    PostgresServer,
    free_port,
)

ENGINES = ["postgres", "mysql"]

# --- classification ------------------------------------------------------------------

PG_PREFIX = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "kind", "reason"),
    [
        ("SSL error: certificate verify failed", "tls", "certificate not trusted"),
        (
            'server certificate for "localhost" (and 2 other names) does not match host '
            'name "127.0.0.2"',
            "tls",
            "host name does not match the certificate",
        ),
        (
            'root certificate file "/x.pem" does not exist',
            "config",
            "CA file missing or unreadable",
        ),
        ("server does not support SSL, but SSL was required", "tls", "server does not offer TLS"),
        (
            'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "u", database "d", '
            "no encryption",
            "tls",
            "server refuses a login without TLS",
        ),
        (
            "Connection refused Is the server running on that host?",
            "retryable",
            "connection refused",
        ),
        ("FATAL:  the database system is starting up", "retryable", "database starting up"),
        ("FATAL:  sorry, too many clients already", "retryable", "too many connections"),
        ("server closed the connection unexpectedly", "retryable", "connection dropped"),
        (
            'FATAL:  password authentication failed for user "u"',
            "auth",
            "password authentication failed",
        ),
        ('FATAL:  database "app" does not exist', "missing_database", "database does not exist"),
        # A name never decides, whatever it holds: not a refused connection, not a
        # database "x" (PostgreSQL does not escape a quote inside a name).
        ('FATAL:  role "connection refused" does not exist', "auth", "role does not exist"),
        (
            'FATAL:  database "a`"b` connection refused" does not exist',
            "missing_database",
            "database does not exist",
        ),
        (
            'FATAL:  password authentication failed for user "no route to host"',
            "auth",
            "password authentication failed",
        ),
        (
            'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "u", database "d", SSL '
            "encryption",
            "auth",
            "host not allowed by pg_hba.conf",
        ),
    ],
)
def test_libpq_messages_are_classified(message: str, kind: str, reason: str) -> None:
    failure = POSTGRES.classify(psycopg.OperationalError(PG_PREFIX + message))
    assert (failure.kind.value, failure.reason.value) == (kind, reason)


POSTGRES = engine_for("postgres")
MYSQL = engine_for("mysql")


def test_psycopg_resolution_failure_and_timeout_are_retryable() -> None:
    resolve = psycopg.OperationalError("failed to resolve host 'db.invalid': [Errno -2] ...")
    assert POSTGRES.classify(resolve).kind.value == "retryable"
    timeout = psycopg.errors.ConnectionTimeout("timeout expired")
    assert POSTGRES.classify(timeout).reason is Reason.TIMED_OUT


def _pymysql_2003(cause: BaseException) -> pymysql.err.OperationalError:
    exc = pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on 'h' ({cause})")
    exc.original_exception = cause
    return exc


def _cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_code = code
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (_pymysql_2003(_cert_error(19, "self-signed certificate in certificate chain")),
         "tls", "certificate not trusted"),
        (_pymysql_2003(_cert_error(64, "IP address mismatch, certificate is not valid")),
         "tls", "host name does not match the certificate"),
        (_pymysql_2003(_cert_error(62, "Hostname mismatch, certificate is not valid")),
         "tls", "host name does not match the certificate"),
        (_pymysql_2003(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]")),
         "tls", "TLS handshake failed"),
        (_pymysql_2003(ssl.SSLEOFError(8, "EOF occurred")), "retryable", "connection dropped"),
        (_pymysql_2003(ConnectionRefusedError(111, "Connection refused")),
         "retryable", "connection refused"),
        (_pymysql_2003(socket.gaierror(-2, "Name or service not known")),
         "retryable", "host name does not resolve"),
        (_pymysql_2003(TimeoutError("timed out")), "retryable", "timed out"),
        (pymysql.err.OperationalError(1045, "Access denied for user"), "auth", "access denied"),
        (pymysql.err.OperationalError(1049, "Unknown database 'x'"),
         "missing_database", "database does not exist"),
        (pymysql.err.OperationalError(1040, "Too many connections"),
         "retryable", "too many connections"),
        (pymysql.err.OperationalError(2013, "Lost connection"), "retryable", "connection dropped"),
        (pymysql.err.OperationalError(2026, "SSL is required but the server doesn't support it"),
         "tls", "server does not offer TLS"),
        (TlsSetupError("CA file /x does not exist"), "config", "CA file missing or unreadable"),
        (ValueError("a bug"), "fatal", "unexpected error"),
    ],
)  # fmt: skip
def test_driver_errors_are_classified(exc: BaseException, kind: str, reason: str) -> None:
    failure = MYSQL.classify(exc)
    assert (failure.kind.value, failure.reason.value) == (kind, reason)


def test_an_unknown_error_is_named_by_its_type() -> None:
    assert "ValueError" in MYSQL.classify(ValueError("a bug")).detail
    assert "ValueError" in POSTGRES.classify(ValueError("a bug")).detail


def test_mysql_1045_hint_mentions_both_causes() -> None:
    hint = MYSQL.classify(pymysql.err.OperationalError(1045, "Access denied")).hint
    assert hint is not None
    assert "password" in hint
    assert "CLOUDBOOT_SSLMODE" in hint


def test_a_secret_in_a_driver_message_does_not_reach_the_failure(secret_password: str) -> None:
    Secret(secret_password)  # cloudboot has seen it, as it has every password it loads
    failure = POSTGRES.classify(
        psycopg.OperationalError(f"FATAL: odd server says {secret_password}")
    )
    assert_no_secret(repr(failure))
    assert "<SECRET>" in failure.detail


# --- TLS contexts ------------------------------------------------------------------


def test_client_context_per_sslmode(certs: Certificates) -> None:
    def context(sslmode: SslMode) -> ssl.SSLContext | None:
        ca = None if sslmode in ("require", "disable") else str(certs.ca_file)
        return client_context(unit_target(sslmode=sslmode, ca_file=ca))

    full, chain, blind = context("verify-full"), context("verify-ca"), context("require")
    assert full is not None
    assert (full.verify_mode, full.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert chain is not None
    assert (chain.verify_mode, chain.check_hostname) == (ssl.CERT_REQUIRED, False)
    assert blind is not None
    assert (blind.verify_mode, blind.check_hostname) == (ssl.CERT_NONE, False)
    assert context("disable") is None


def test_the_system_bundle_is_ssl_cert_file_when_set(certs: Certificates) -> None:
    secret = rds_secret(host="h", password="ca-test-password", engine="mysql")
    environ = {"DB_SECRET": secret, "SSL_CERT_FILE": str(certs.ca_file)}
    target = load(environ).target
    assert target.ca_file == str(certs.ca_file)
    context = client_context(target)
    assert context is not None
    assert context.cert_store_stats()["x509_ca"] == 1


def test_missing_ca_file_is_a_tls_setup_error(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match="does not exist"):
        client_context(unit_target(ca_file=str(tmp_path / "none.pem")))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(TlsSetupError, match="cannot be loaded"):
        client_context(unit_target(ca_file=str(tmp_path / "junk.pem")))


# --- backoff rules (no real sleeping) ------------------------------------------------


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, **changes: Any) -> Policy:
        return Policy(clock=self.clock, sleep=self.sleep, rand=lambda: 0.5, **changes)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    low = Policy(rand=lambda: 0.0)
    high = Policy(rand=lambda: 0.999999)
    assert backoff_delay(1, low) == pytest.approx(0.025)
    assert backoff_delay(1, high) == pytest.approx(0.05, rel=1e-3)
    assert backoff_delay(3, high) == pytest.approx(0.2, rel=1e-3)
    assert backoff_delay(50, high) == pytest.approx(2.0, rel=1e-3)
    assert backoff_delay(10_000, low) == pytest.approx(1.0)


def _target(port: int = 9, **fields: Any) -> bootstrap.Target:
    return unit_target(host=HOST, port=port, **fields)


def _raising(*errors: BaseException, result: str = "ok") -> Callable[[float], str]:
    queue = list(errors)

    def operation(_timeout: float) -> str:
        if queue:
            raise queue.pop(0)
        return result

    return operation


TOO_MANY = pymysql.err.OperationalError(1040, "Too many connections")
DENIED = pymysql.err.OperationalError(1045, "Access denied")


def test_retryable_failures_are_retried_until_success() -> None:
    fake = FakeTime()
    operation = _raising(TOO_MANY, TOO_MANY, TOO_MANY)
    assert retrying(operation, _target(), events=events.WAIT, policy=fake.policy()) == "ok"
    assert fake.sleeps == pytest.approx([0.0375, 0.075, 0.15])


def test_auth_failures_end_with_77_after_three_tries() -> None:
    fake = FakeTime()
    operation = _raising(DENIED, DENIED, DENIED, DENIED)
    with pytest.raises(RefusedError, match="3 times") as caught:
        retrying(operation, _target(), events=events.WAIT, policy=fake.policy())
    assert caught.value.exit_code == 77
    assert len(fake.sleeps) == 2


def test_tls_failure_ends_with_77_without_a_retry() -> None:
    fake = FakeTime()
    operation = _raising(_pymysql_2003(_cert_error(19, "self-signed certificate")))
    with pytest.raises(RefusedError, match="certificate not trusted"):
        retrying(operation, _target(), events=events.WAIT, policy=fake.policy())
    assert fake.sleeps == []


def test_deadline_ends_with_69_at_the_deadline() -> None:
    fake = FakeTime()
    operation = _raising(*[TOO_MANY] * 1000)
    with pytest.raises(UnavailableError, match="within 30 s") as caught:
        retrying(operation, _target(wait_timeout=30), events=events.WAIT, policy=fake.policy())
    assert caught.value.exit_code == 69
    assert sum(fake.sleeps) == pytest.approx(30.0)
    assert max(fake.sleeps) <= 1.5 + 1e-9  # the cap (2 s) times the jitter (0.75)


def test_missing_database_without_create_is_69_at_once() -> None:
    fake = FakeTime()
    operation = _raising(pymysql.err.OperationalError(1049, "Unknown database"))
    with pytest.raises(UnavailableError, match=r"database app does not exist on 127\.0\.0\.1:9"):
        retrying(operation, _target(), events=events.WAIT, policy=fake.policy())


def test_a_new_phase_starts_the_backoff_again(unused_port: int) -> None:
    # Refused many times (the port is closed), then the port opens but the server says
    # "too many connections": the first retry of the new phase is short again.
    fake = FakeTime()
    refused = [_pymysql_2003(ConnectionRefusedError(111, "refused")) for _ in range(8)]
    operation = _raising(*refused, TOO_MANY)
    policy = fake.policy(probe_interval=0.015)
    retrying(operation, _target(unused_port), events=events.WAIT, policy=policy)
    # The probes slept in 15 ms steps while the port was closed; the last pause is the
    # new phase's first delay.
    assert fake.sleeps[-1] == pytest.approx(0.0375)


def test_port_closed_means_before_any_tcp_connection() -> None:
    assert Failure(Reason.CONNECTION_REFUSED).port_closed
    assert not Failure(Reason.STARTING_UP).port_closed
    assert not Failure(Reason.ACCESS_DENIED).port_closed


@pytest.fixture
def unused_port() -> int:
    return free_port()


def test_wait_for_port_returns_as_soon_as_the_port_opens(unused_port: int) -> None:
    address = socket.getaddrinfo(HOST, unused_port, type=socket.SOCK_STREAM)[0]
    assert not wait_for_port(address, 0.1)
    listener = socket.socket()

    def open_later() -> None:
        time.sleep(0.3)
        listener.bind((HOST, unused_port))
        listener.listen()

    thread = threading.Thread(target=open_later)
    started = time.monotonic()
    thread.start()
    try:
        assert wait_for_port(address, 10.0)
        assert time.monotonic() - started < 2.0
    finally:
        thread.join()
        listener.close()


# --- cloudboot wait against real servers -----------------------------------------------


def test_wait_succeeds_and_logs_ready(target: Target, home: Path) -> None:
    result = run(["wait"], target.environ(), home=home)
    assert result.returncode == 0, result
    ready = result.event("cloudboot.wait.ready")
    assert ready["attempts"] == 1
    assert ready["database_exists"] is False  # logged in; the database is created later
    assert not target.database_exists()  # wait creates nothing


def test_never_up_exits_69_near_the_deadline(target: Target, home: Path, unused_port: int) -> None:
    env = target.environ(DB_PORT=str(unused_port), CLOUDBOOT_WAIT_TIMEOUT="2")
    result = run(["wait"], env, home=home)
    assert result.returncode == 69, result
    assert 1.9 < result.elapsed < 10, result
    retries = [e for e in result.events if e["event"] == "cloudboot.wait.retry"]
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    assert {e["error_class"] for e in retries} == {"retryable"}
    assert all(e["reason"] == "connection refused" for e in retries)
    assert all("elapsed_s" in e for e in retries)
    assert result.event("cloudboot.failed")["exit_code"] == 69


def test_wrong_ca_exits_77_at_once(target: Target, home: Path, certs: Certificates) -> None:
    env = target.environ(CLOUDBOOT_CA_FILE=str(certs.other_ca_file), CLOUDBOOT_WAIT_TIMEOUT="60")
    result = run(["wait"], env, home=home)
    assert result.returncode == 77, result
    assert result.elapsed < 10, result
    assert "certificate not trusted" in result.event("cloudboot.failed")["error"]
    assert "cloudboot.wait.retry" not in result.names()


def test_host_name_mismatch_exits_77_at_once(target: Target, home: Path) -> None:
    env = target.environ(DB_HOST=MISMATCH_HOST, CLOUDBOOT_WAIT_TIMEOUT="60")
    result = run(["wait"], env, home=home)
    assert result.returncode == 77, result
    assert result.elapsed < 10, result
    assert "host name does not match" in result.event("cloudboot.failed")["error"]
    # The same address is fine when only the chain is checked.
    ok = run(["wait"], {**env, "CLOUDBOOT_SSLMODE": "verify-ca"}, home=home)
    assert ok.returncode == 0, ok


def test_wrong_password_exits_77(target: Target, home: Path) -> None:
    env = target.environ(DB_PASSWORD="not-the-password", CLOUDBOOT_WAIT_TIMEOUT="60")
    result = run(["wait"], env, home=home)
    assert result.returncode == 77, result
    assert result.elapsed < 10, result
    assert [e["error_class"] for e in result.events if e["event"] == "cloudboot.wait.retry"] == [
        "auth",
        "auth",
    ]


def test_missing_database_without_create_database_exits_69(target: Target, home: Path) -> None:
    env = target.environ(CLOUDBOOT_CREATE_DATABASE="false")
    result = run(["wait"], env, home=home)
    assert result.returncode == 69, result
    assert "does not exist" in result.event("cloudboot.failed")["error"]


def test_sigterm_during_the_wait_exits_143(target: Target, home: Path, unused_port: int) -> None:
    env = target.environ(DB_PORT=str(unused_port), CLOUDBOOT_WAIT_TIMEOUT="60")
    process = start(["wait"], env, home=home)
    read_until(process, "cloudboot.wait.retry")  # waiting, not still starting Python
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    result = finish(process, started=sent, timeout=10)
    assert result.returncode == 143, result
    assert result.elapsed < 2.0, result


def test_sigint_during_the_wait_exits_130(home: Path, unused_port: int) -> None:
    env = {"DATABASE_URL": f"postgresql://u:pw-for-sigint@{HOST}:{unused_port}/app"}
    process = start(["wait"], {**env, "CLOUDBOOT_LOG_FORMAT": "json"}, home=home)
    read_until(process, "cloudboot.wait.retry")
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    result = finish(process, started=sent, timeout=10)
    assert result.returncode == 130, result
    assert result.elapsed < 2.0, result


LONG_HOST = "aurora-cluster-abcdefghijkl.cluster-0123456789ab.eu-west-1.rds.invalid"
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _screen_lines(output: str) -> list[str]:
    """What a terminal shows, segment by segment: escape sequences dropped, every
    carriage return and line feed a new segment (each starts at column 0)."""
    return [part for part in re.split(r"[\r\n]", CSI.sub("", output)) if part]


def test_progress_line_on_a_terminal(home: Path) -> None:
    assert len(LONG_HOST) == 70
    env = {
        # The name does not resolve (.invalid): the wait retries until its deadline.
        "DATABASE_URL": f"postgresql://u:pw-on-a-tty@{LONG_HOST}:5432/app",
        "CLOUDBOOT_WAIT_TIMEOUT": "2.5",
        "CLOUDBOOT_LOG_FORMAT": "console",
    }
    output = run_on_a_terminal(["wait"], clean_env(home, env), columns=80)
    assert_no_secret(output)
    lines = _screen_lines(output)
    progress = [line for line in lines if line.startswith("waiting for ")]
    # The drawn line never wraps (log lines are printed, and may wrap as any output).
    assert progress, output
    assert all(len(line) <= 80 for line in progress), [p for p in progress if len(p) > 80]
    # The long host is shortened in the middle; the line speaks plainly.
    assert all("…" in line and line.endswith("host name does not resolve") for line in progress)
    assert all(" s of 2.5 s — " in line for line in progress)
    # Drawn on a clock (about every 200 ms), not only per attempt: the seconds move.
    assert len(progress) >= 6, progress
    assert {line.split(" — ")[1] for line in progress} >= {"0 s of 2.5 s", "2 s of 2.5 s"}
    # Erased before anything else is printed: the final message starts a clean line.
    assert "cloudboot.wait.retry" not in output  # the line replaces per-attempt events
    error = output.index("cloudboot: error:")
    assert output[:error].endswith(("\r\x1b[K", "\n")), repr(output[error - 20 : error])
    assert "did not answer within 2.5 s" in output


def test_no_progress_line_and_no_colour_when_not_a_terminal(home: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://u:pw-on-a-pipe@{LONG_HOST}:5432/app",
        "CLOUDBOOT_WAIT_TIMEOUT": "0.5",
        "CLOUDBOOT_LOG_FORMAT": "console",
    }
    result = run(["wait"], env, home=home)
    assert result.returncode == 69
    assert "\r" not in result.stderr
    assert "\x1b" not in result.stderr
    assert "cloudboot: error:" in result.stderr


# --- late start, restart, drop ---------------------------------------------------------


@pytest.fixture(scope="module")
def private_servers(certs: Certificates) -> Iterator[dict[str, PostgresServer | MariaDBServer]]:
    """One server per engine that this module's tests may stop and start (cheaper than a
    new one per test: a stop and start instead of an install)."""
    with PostgresServer(certs) as postgres, MariaDBServer(certs) as mariadb:
        register_secret(postgres.admin_password)
        yield {"postgres": postgres, "mysql": mariadb}


@pytest.fixture(params=ENGINES)
def stopped_target(
    request: pytest.FixtureRequest,
    private_servers: dict[str, PostgresServer | MariaDBServer],
    secret_password: str,
) -> Target:
    """A target on a private server that is stopped (its user already exists)."""
    server = private_servers[request.param]
    if not server.is_running():
        server.start()
    target = make_target(request.param, server, secret_password)
    server.stop()
    return target


def _accepts_login(target: Target) -> bool:
    """One verified-TLS login as the target's user, from the test."""
    try:
        if isinstance(target.server, PostgresServer):
            kwargs = target.server.connect_kwargs(target.user, target.password)
            psycopg.connect(**{**kwargs, "connect_timeout": 2}).close()
        else:
            kwargs = target.server.connect_kwargs(target.user, target.password)
            pymysql.connect(**{**kwargs, "connect_timeout": 2}).close()
    except (psycopg.Error, pymysql.err.MySQLError):
        return False
    return True


def test_database_started_3_s_later_proceeds(stopped_target: Target, home: Path) -> None:
    env = stopped_target.environ(CLOUDBOOT_WAIT_TIMEOUT="60")
    process = start(["migrate"], env, home=home)
    time.sleep(3)
    stopped_target.server.start(wait=False)
    result = finish(process, timeout=60)
    assert result.returncode == 0, result
    assert stopped_target.database_exists()
    retries = [e for e in result.events if e["event"] == "cloudboot.wait.retry"]
    assert retries, result
    assert retries[0]["reason"] == "connection refused"
    if stopped_target.engine == "postgres":
        # The cheap startup probe saw the server through "starting up": no full TLS
        # login was spent on it.
        names = result.names()
        assert "cloudboot.wait.accepting" in names, result
        assert names.index("cloudboot.wait.port_open") < names.index("cloudboot.wait.accepting")
        assert "database starting up" not in {e["reason"] for e in retries}, result


class _FakeStartup:
    """A listener that reads one startup packet and answers it with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.address = socket.getaddrinfo(
            HOST, self.listener.getsockname()[1], type=socket.SOCK_STREAM
        )[0]
        self.received = b""
        self.thread = threading.Thread(target=self._serve, args=(reply,), daemon=True)
        self.thread.start()

    def _serve(self, reply: bytes) -> None:
        conn, _ = self.listener.accept()
        with conn:
            length = int.from_bytes(conn.recv(4), "big")
            while len(self.received) < length - 4:
                self.received += conn.recv(4096)
            conn.sendall(reply)

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def _error_response(code: bytes) -> bytes:
    body = b"SFATAL\0C" + code + b"\0Mthe database system is starting up\0\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        (_error_response(b"57P03"), True),
        (_error_response(b"28000"), False),  # no pg_hba entry: up, and judging logins
        (b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"), False),  # asks a password
        (b"", None),  # closed without a word
        (b"E" + (1 << 30).to_bytes(4, "big") + b"x" * 20000, None),  # claims a gigabyte
    ],
)
def test_the_startup_probe_reads_the_first_answer(reply: bytes, answer: bool | None) -> None:
    fake = _FakeStartup(reply)
    try:
        assert engine_for("postgres").still_starting(fake.address, 2.0) is answer
    finally:
        fake.close()
    # The probe names a fixed user and database, never the target's.
    assert b"user\0cloudboot-probe\0database\0cloudboot-probe\0" in fake.received


def test_a_startup_probe_answered_a_byte_at_a_time_ends_at_its_timeout() -> None:
    listener = socket.create_server((HOST, 0))
    address = socket.getaddrinfo(HOST, listener.getsockname()[1], type=socket.SOCK_STREAM)[0]

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            for byte in _error_response(b"57P03"):
                conn.sendall(bytes([byte]))
                time.sleep(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        assert engine_for("postgres").still_starting(address, 1.0) is None
        assert time.monotonic() - started < 5.0  # bounded by the timeout, not per byte
    finally:
        listener.close()
        thread.join(10)


def test_the_startup_probe_of_a_closed_port_or_mysql_cannot_tell(unused_port: int) -> None:
    address = socket.getaddrinfo(HOST, unused_port, type=socket.SOCK_STREAM)[0]
    assert engine_for("postgres").still_starting(address, 0.5) is None
    assert engine_for("mysql").still_starting(address, 0.5) is None


def test_the_startup_probe_says_a_running_tls_only_server_takes_logins(
    pg_server: PostgresServer,
) -> None:
    address = socket.getaddrinfo(HOST, pg_server.port, type=socket.SOCK_STREAM)[0]
    assert engine_for("postgres").still_starting(address, 2.0) is False


def test_restart_right_after_first_accepting_still_proceeds(
    stopped_target: Target, home: Path
) -> None:
    # Once cloudboot is waiting, the server starts; the test logs in as soon as it can
    # and restarts it at once, the way PostgreSQL's image stops its first ("init")
    # server right after it said ready. Whichever side of the restart cloudboot's
    # connections land on, the boot goes on.
    env = stopped_target.environ(CLOUDBOOT_WAIT_TIMEOUT="60", CLOUDBOOT_MIGRATE_COMMAND="true")
    process = start(["migrate"], env, home=home)
    seen = read_until(process, "cloudboot.wait.retry")
    stopped_target.server.start(wait=False)
    deadline = time.monotonic() + 30
    while not _accepts_login(stopped_target):
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.002)
    stopped_target.server.restart(wait=False)
    result = finish(process, timeout=60, stderr_before=seen)
    assert result.returncode == 0, result
    stopped_target.server.wait_until_ready()  # cloudboot may have been done before it
    assert stopped_target.database_exists()
    assert result.names().count("cloudboot.hook.done") == 1


class DropAfterFirst:
    """A TCP proxy in front of a server that forwards the first connection, then, once
    that one ends, refuses connections for ``outage`` seconds (a server restarting
    right after its first login), then forwards again."""

    def __init__(self, upstream_port: int, outage: float = 1.0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.outage = outage
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _listen(self) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        return listener

    def _serve(self) -> None:
        listener = self._listen()
        first_done = False
        while not self.stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            pipe = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            pipe.start()
            if not first_done:
                first_done = True
                pipe.join()
                listener.close()
                time.sleep(self.outage)
                listener = self._listen()
        listener.close()

    def _pipe(self, client: socket.socket) -> None:
        # Either side may reset the connection when it gives up; that ends the pipe.
        with contextlib.suppress(OSError):
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        with client, socket.create_connection((HOST, self.upstream_port)) as upstream:
            sockets = [client, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 5)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


@pytest.fixture
def drop_after_first(target: Target) -> Iterator[DropAfterFirst]:
    proxy = DropAfterFirst(target.server.port, outage=0.5)
    yield proxy
    proxy.close()


def test_server_gone_right_after_the_wait_costs_a_retry_not_the_boot(
    target: Target, home: Path, drop_after_first: DropAfterFirst
) -> None:
    env = target.environ(DB_PORT=str(drop_after_first.port), CLOUDBOOT_MIGRATE_COMMAND="true")
    result = run(["migrate"], env, home=home)
    assert result.returncode == 0, result
    assert target.database_exists()
    names = result.names()
    assert names.index("cloudboot.wait.ready") < names.index("cloudboot.database.retry")
    retry = result.event("cloudboot.database.retry")
    # Refused once the proxy stopped listening; dropped if it was still queued then.
    assert retry["error_class"] == "retryable"
    assert retry["reason"] in ("connection refused", "connection dropped")
