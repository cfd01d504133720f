"""``cloudboot check`` against the throwaway TLS servers (both engines) and against tiny
fake servers for the cases a real server cannot be talked into (an expired certificate,
an RDS-looking issuer, a server without TLS)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from bootproc import Target, make_target
from bootstrap.check import Report, Step, run_check
from bootstrap.check.certificates import format_name, host_matches_certificate
from bootstrap.check.report import STEP_NAMES
from bootstrap.cli import main
from bootstrap.secret import Secret
from factories import login_secret, rds_secret
from leakguard import assert_no_secret
from servers import (
    MISMATCH_HOST,
    SECRET_PASSWORD,
    Certificates,
    MariaDBServer,
    PostgresServer,
    free_port,
)


@pytest.fixture(scope="module")
def pg_target(pg_server: PostgresServer) -> Target:
    return make_target("postgres", pg_server, SECRET_PASSWORD, create_database=True)


@pytest.fixture(scope="module")
def my_target(mariadb_server: MariaDBServer) -> Target:
    return make_target("mysql", mariadb_server, SECRET_PASSWORD, create_database=True)


@pytest.fixture(params=["postgres", "mysql"])
def target(request: pytest.FixtureRequest) -> Target:
    name = "pg_target" if request.param == "postgres" else "my_target"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def environ_for(target: Target, **changes: Any) -> dict[str, str]:
    """The environment of a container whose secret points at ``target``; ``changes``
    replace fields of the secret (lower case) or add variables (upper case)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "CLOUDBOOT_CA_FILE": str(target.ca_file),
    }
    env.update({key: str(value) for key, value in changes.items() if key.isupper()})
    fields = {key: value for key, value in changes.items() if not key.isupper()}
    env["DB_SECRET"] = login_secret(target, **fields)
    return env


def run_json(environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    """``cloudboot check --json`` through the real entry point: exit code and JSON."""
    code = main(["check", "--json"], environ)
    out = capsys.readouterr().out
    assert_no_secret(out)
    return code, json.loads(out)


def names(report: dict[str, Any]) -> list[str]:
    return [step["name"] for step in report["steps"]]


def failing(report: dict[str, Any]) -> dict[str, Any]:
    """The last step, which must be the one that failed."""
    assert report["ok"] is False
    last: dict[str, Any] = report["steps"][-1]
    assert last["ok"] is False
    assert all(step["ok"] for step in report["steps"][:-1])
    assert isinstance(last["error"], str)
    assert isinstance(last["hint"], str)
    return last


# --- against the real servers ----------------------------------------------------------


def test_healthy_server_passes_every_step(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target), capsys)
    assert code == 0
    assert report["ok"] is True
    assert names(report) == list(STEP_NAMES)
    for step in report["steps"]:
        assert step["ok"] is True
        assert step["error"] is None
        assert step["hint"] is None
        assert isinstance(step["elapsed_ms"], int | float)
    steps = {step["name"]: step["detail"] for step in report["steps"]}
    assert steps["sources"]["source"] == "DB_SECRET"
    assert steps["sources"]["variables"] == ["DB_SECRET"]
    assert "127.0.0.1" in steps["dns"]["addresses"] or "::1" in steps["dns"]["addresses"]
    tls = steps["tls"]
    assert tls["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert tls["cipher"]
    assert "trustme" in tls["subject"]
    assert "Testing CA" in tls["issuer"]
    assert tls["not_after"] == "3000-01-01T00:00:00Z"
    assert "DNS:localhost" in tls["names"]
    assert tls["host_name_matches"] is True
    assert tls["trusted"] is True
    assert steps["auth"]["session_tls"].startswith("TLSv1.")
    assert steps["auth"]["user"].startswith(target.user)
    assert steps["database"] == {"name": target.dbname, "exists": True}
    server = steps["server"]
    if target.engine == "postgres":
        assert server["version"].startswith("15.")
        assert server["encoding"] == "UTF8"
        assert server["lc_collate"] == "C.UTF-8"
    else:
        assert "MariaDB" in server["version"]
        assert server["database_charset"] == "utf8mb4"
        assert server["database_collation"].startswith("utf8mb4_")


def test_text_report_has_the_same_facts(target: Target) -> None:
    report = run_check(environ_for(target))
    text = report.to_text()
    assert_no_secret(text)
    for step in STEP_NAMES:
        assert f"[PASS] {step} (" in text
    tls = report.steps[3].detail
    assert f"issuer: {tls['issuer']}" in text
    assert f"not_after: {tls['not_after']}" in text
    assert "host_name_matches: yes" in text
    assert text.endswith("all 7 steps passed")


def test_certificate_from_another_ca_fails_the_tls_step(
    target: Target, certs: Certificates, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = environ_for(target, CLOUDBOOT_CA_FILE=certs.other_ca_file)
    code, report = run_json(environ, capsys)
    assert code == 77
    assert names(report) == ["sources", "dns", "tcp", "tls"]
    step = failing(report)
    assert step["detail"]["trusted"] is False
    assert step["detail"]["host_name_matches"] is True
    issuer = step["detail"]["issuer"]
    assert "Testing CA" in issuer
    # The cause names the issuer and the CA file that lacks it.
    assert step["error"] == (
        f"the server's certificate is issued by {issuer}; "
        f"the CA file {certs.other_ca_file} does not contain it"
    )
    assert "CLOUDBOOT_CA_FILE" in step["hint"]


def test_host_name_mismatch_fails_under_verify_full_only(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target, host=MISMATCH_HOST), capsys)
    assert code == 77
    step = failing(report)
    assert step["name"] == "tls"
    assert step["detail"]["trusted"] is True
    assert step["detail"]["host_name_matches"] is False
    assert step["error"].endswith(f"not {MISMATCH_HOST}")
    assert "verify-ca" in step["hint"]

    relaxed = environ_for(target, host=MISMATCH_HOST, CLOUDBOOT_SSLMODE="verify-ca")
    code, report = run_json(relaxed, capsys)
    assert code == 0
    tls = report["steps"][3]["detail"]
    assert (tls["trusted"], tls["host_name_matches"]) == (True, False)


def test_wrong_password_fails_the_auth_step(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target, password="not-the-password"), capsys)
    assert code == 77
    assert names(report) == ["sources", "dns", "tcp", "tls", "auth"]
    step = failing(report)
    assert "denied" in step["error"] or "authentication failed" in step["error"]
    assert "DB_SECRET" in step["hint"]


def test_missing_database_fails_the_database_step(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target, dbname="no_such_db"), capsys)
    assert code == 69
    assert names(report) == ["sources", "dns", "tcp", "tls", "auth", "database"]
    step = failing(report)
    assert step["error"] == "database `no_such_db` does not exist"
    assert step["hint"].startswith(
        "cloudboot creates it on boot unless CLOUDBOOT_CREATE_DATABASE=false"
    )
    # The login itself was proved, on the maintenance database.
    assert report["steps"][4]["detail"]["user"].startswith(target.user)

    code, report = run_json(
        environ_for(target, dbname="no_such_db", CLOUDBOOT_CREATE_DATABASE="false"), capsys
    )
    assert code == 69
    assert "cloudboot will not create it" in failing(report)["hint"]


def test_unresolvable_host_fails_the_dns_step(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target, host="db.cloudboot.invalid"), capsys)
    assert code == 69
    assert names(report) == ["sources", "dns"]
    step = failing(report)
    assert "db.cloudboot.invalid does not resolve" in step["error"]


def test_closed_port_fails_the_tcp_step(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, report = run_json(environ_for(target, port=port), capsys)
    assert code == 69
    assert names(report) == ["sources", "dns", "tcp"]
    step = failing(report)
    assert "refused" in step["error"]
    assert f"port {port}" in step["hint"]


def test_missing_credentials_fail_the_sources_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json({"PATH": os.environ["PATH"]}, capsys)
    assert code == 78
    assert names(report) == ["sources"]
    step = failing(report)
    assert "no database credentials found" in step["error"]
    assert step["detail"]["problems"]


def test_bad_secret_is_reported_without_its_value(
    pg_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = environ_for(pg_target)
    environ["DB_SECRET"] = json.dumps({"host": "localhost", "password": SECRET_PASSWORD})
    code, report = run_json(environ, capsys)  # run_json asserts no secret is shown
    assert code == 78
    assert "DB_SECRET field 'username' is missing" in failing(report)["detail"]["problems"]


def test_unreadable_ca_file_is_a_configuration_error(
    target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CA file that is not there is judged with the other settings, at load ...
    missing = tmp_path / "nope.pem"
    code, report = run_json(environ_for(target, CLOUDBOOT_CA_FILE=missing), capsys)
    assert code == 78
    step = failing(report)
    assert step["name"] == "sources"
    assert str(missing) in step["error"]
    # ... one that is there but holds no certificate when TLS first needs it.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    code, report = run_json(environ_for(target, CLOUDBOOT_CA_FILE=junk), capsys)
    assert code == 78
    step = failing(report)
    assert step["name"] == "tls"
    assert str(junk) in step["error"]


def test_sslmode_require_describes_the_certificate_without_trusting_it(
    target: Target, certs: Certificates, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = environ_for(
        target, CLOUDBOOT_SSLMODE="require", CLOUDBOOT_CA_FILE=certs.other_ca_file
    )
    code, report = run_json(environ, capsys)
    assert code == 0
    tls = report["steps"][3]["detail"]
    assert tls["trusted"] is None
    assert "Testing CA" in tls["issuer"]


def test_sslmode_disable_skips_tls_and_the_server_refuses_plaintext(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(target, CLOUDBOOT_SSLMODE="disable"), capsys)
    tls = report["steps"][3]
    assert tls["ok"] is True
    assert tls["detail"] == {
        "skipped": True,
        "reason": "TLS disabled by CLOUDBOOT_SSLMODE=disable",
    }
    # The test servers accept TLS logins only.
    assert code == 77
    assert failing(report)["name"] == "auth"


def test_postgres_settings_against_a_mysql_port(
    my_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(my_target, engine="postgres"), capsys)
    assert code == 78
    step = failing(report)
    assert step["name"] == "tls"
    assert "does not speak PostgreSQL's protocol" in step["error"]


def test_mysql_settings_against_a_postgres_port_without_tls_name_the_engine(
    pg_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    # No TLS step to notice the protocol: the login's failure is identified as the boot
    # identifies it, a setting that cannot work (78), not a server to wait for.
    environ = environ_for(pg_target, engine="mysql", CLOUDBOOT_SSLMODE="disable")
    code, report = run_json(environ, capsys)
    assert code == 78
    step = failing(report)
    assert step["name"] == "auth"
    assert "other engine" in step["error"]
    assert "PostgreSQL" in step["hint"]


def test_a_denied_mysql_login_under_tls_does_not_suggest_turning_tls_on(
    my_target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(environ_for(my_target, password="not-the-password"), capsys)
    assert code == 77
    step = failing(report)
    assert "SSLMODE" not in step["hint"], step["hint"]
    # Under sslmode=disable, a TLS-only server refuses the same way: then it is said.
    code, report = run_json(
        environ_for(my_target, password="not-the-password", CLOUDBOOT_SSLMODE="disable"), capsys
    )
    assert code == 77
    assert "CLOUDBOOT_SSLMODE=disable" in failing(report)["hint"]


def test_python_m_bootstrap_check_prints_text(pg_target: Target) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap", "check"],
        env=environ_for(pg_target, password="wrong-password"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_no_secret(result.stdout + result.stderr)
    assert result.returncode == 77
    assert "[FAIL] auth (" in result.stdout
    assert result.stdout.rstrip().endswith("check failed at step auth (exit 77)")


# --- fake servers for the certificate cases ------------------------------------------


class FakeServer:
    """A listener on 127.0.0.1 that hands every connection to ``serve`` in a thread."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self.serve = serve
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            # A fake ends its side however the client leaves; the client's report is
            # what the tests check.
            with conn, contextlib.suppress(OSError, ValueError):
                conn.settimeout(5)
                self.serve(conn)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.listener.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeServer]]:
    made: list[FakeServer] = []

    def make(serve: Callable[[socket.socket], None]) -> FakeServer:
        made.append(FakeServer(serve))
        return made[-1]

    yield make
    for server in made:
        server.close()


SSL_REQUEST = struct.pack("!II", 8, 80877103)


def postgres_tls(leaf: trustme.LeafCert) -> Callable[[socket.socket], None]:
    """PostgreSQL's side of the SSLRequest, then a TLS handshake with ``leaf``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)

    def serve(conn: socket.socket) -> None:
        if conn.recv(8) != SSL_REQUEST:
            return  # the tcp step's bare connect
        conn.sendall(b"S")
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # until the client goes away

    return serve


def fake_environ(port: int, ca_file: Path, engine: str = "postgres") -> dict[str, str]:
    secret = rds_secret(
        host="127.0.0.1", port=port, username="someone", password=SECRET_PASSWORD, engine=engine
    )
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "CLOUDBOOT_CA_FILE": str(ca_file),
        "DB_SECRET": secret,
    }


def test_expired_certificate_is_explained(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer], tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert(
        "127.0.0.1", not_before=datetime(2020, 1, 1), not_after=datetime(2021, 1, 1)
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = fake_server(postgres_tls(leaf))
    report = run_check(fake_environ(server.port, tmp_path / "ca.pem"))
    assert report.exit_code == 77
    step = report.steps[-1]
    assert step.name == "tls"
    assert step.detail["not_after"] == "2021-01-01T00:00:00Z"
    assert step.detail["days_left"] < 0
    assert step.error == "the server's certificate expired on 2021-01-01T00:00:00Z"
    assert step.hint is not None
    assert "renew" in step.hint


def test_expiry_outranks_a_name_mismatch(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer], tmp_path: Path
) -> None:
    # OpenSSL reports the name first; the cause to fix is the expiry, in either mode.
    ca = trustme.CA()
    leaf = ca.issue_cert(
        "localhost", not_before=datetime(2020, 1, 1), not_after=datetime(2021, 1, 1)
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = fake_server(postgres_tls(leaf))
    for mode in ("verify-full", "verify-ca"):
        environ = fake_environ(server.port, tmp_path / "ca.pem")
        environ["CLOUDBOOT_SSLMODE"] = mode
        report = run_check(environ)
        step = report.steps[-1]
        assert (step.name, report.exit_code) == ("tls", 77)
        assert step.error == "the server's certificate expired on 2021-01-01T00:00:00Z"
        assert (step.detail["trusted"], step.detail["host_name_matches"]) == (False, False)


def test_rds_issuer_gets_the_rds_bundle_hint(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
) -> None:
    rds = trustme.CA(
        organization_name="Amazon Web Services, Inc.", organization_unit_name="Amazon RDS"
    )
    server = fake_server(postgres_tls(rds.issue_cert("127.0.0.1")))
    report = run_check(fake_environ(server.port, certs.other_ca_file))
    step = report.steps[-1]
    assert (step.name, report.exit_code) == ("tls", 77)
    assert step.error is not None
    assert "issued by O=Amazon Web Services, Inc., OU=Amazon RDS" in step.error
    assert step.hint is not None
    assert "RDS global bundle" in step.hint
    assert "global-bundle.pem" in step.hint


def test_postgres_server_without_tls(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
) -> None:
    def refuse(conn: socket.socket) -> None:
        if conn.recv(8) == SSL_REQUEST:
            conn.sendall(b"N")

    report = run_check(fake_environ(fake_server(refuse).port, certs.ca_file))
    step = report.steps[-1]
    assert (step.name, report.exit_code) == ("tls", 77)
    assert step.error is not None
    assert "does not accept TLS" in step.error


def mysql_greeting(capabilities: int) -> bytes:
    body = (
        b"\x0a5.5.5-10.11.0-fake\0"
        + struct.pack("<I", 7)
        + b"abcdefgh\0"
        + struct.pack("<HBHH", capabilities & 0xFFFF, 45, 2, capabilities >> 16)
        + b"\0" * 11
    )
    return len(body).to_bytes(3, "little") + b"\0" + body


def test_mysql_server_without_tls(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
) -> None:
    def greet(conn: socket.socket) -> None:
        conn.sendall(mysql_greeting(0xF7FF))  # everything but CLIENT_SSL
        conn.recv(64)

    report = run_check(fake_environ(fake_server(greet).port, certs.ca_file, "mysql"))
    step = report.steps[-1]
    assert (step.name, report.exit_code) == ("tls", 77)
    assert step.error == "the server does not offer TLS"


def test_mysql_server_refusing_before_tls(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
) -> None:
    def busy(conn: socket.socket) -> None:
        body = b"\xff" + struct.pack("<H", 1040) + b"Too many connections"
        conn.sendall(len(body).to_bytes(3, "little") + b"\0" + body)

    report = run_check(fake_environ(fake_server(busy).port, certs.ca_file, "mysql"))
    step = report.steps[-1]
    assert (step.name, report.exit_code) == ("tls", 69)
    assert step.error is not None
    assert "1040 Too many connections" in step.error


@pytest.mark.parametrize(
    "greeting",
    [
        b"\x01\x00\x00\x00\x0a",  # a protocol-10 greeting of one byte: no version
        b"\x06\x00\x00\x00\x0a5.7\x00\x01",  # cut off before the capabilities
        b"\x05\x00\x00\x00garbage",  # not a greeting at all
        b"\xff\xff\xff\x00",  # a 16 MiB packet announced
    ],
    ids=["no-version", "truncated", "garbage", "huge"],
)
def test_an_odd_mysql_greeting_is_a_failed_step_not_a_crash(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
    greeting: bytes,
) -> None:
    def greet(conn: socket.socket) -> None:
        conn.sendall(greeting)

    report = run_check(fake_environ(fake_server(greet).port, certs.ca_file, "mysql"))
    step = report.steps[-1]
    assert not step.ok
    assert step.name == "tls"
    assert report.exit_code in (69, 78)
    assert step.error
    assert step.hint


def test_a_postgres_answer_that_is_not_s_or_n_is_the_wrong_protocol(
    fake_server: Callable[[Callable[[socket.socket], None]], FakeServer],
    certs: Certificates,
) -> None:
    def answer(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(b"J\x00\x00\x00")

    report = run_check(fake_environ(fake_server(answer).port, certs.ca_file))
    assert (report.steps[-1].name, report.exit_code) == ("tls", 78)


def test_a_query_the_user_may_not_run_is_a_failed_step(
    pg_server: PostgresServer, secret_password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hardened server revokes the statistics views from ordinary users.
    login = make_target("postgres", pg_server, secret_password, create_database=True)
    # Catalog privileges are per database: this one alone.
    revoke = f"REVOKE SELECT ON pg_catalog.pg_stat_ssl FROM PUBLIC, {login.user}"  # noqa: S608 - a generated test user
    pg_server.admin_sql(revoke, dbname=login.dbname)
    code, report = run_json(environ_for(login), capsys)
    step = failing(report)
    assert (step["name"], code) == ("auth", 77)
    assert step["error"] == "permission denied"


# --- pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "alt_names", "expected"),
    [
        ("db.example.com", [("DNS", "db.example.com")], True),
        ("DB.Example.com.", [("DNS", "db.example.com")], True),
        ("db.example.com", [("DNS", "*.example.com")], True),
        ("a.b.example.com", [("DNS", "*.example.com")], False),
        ("example.com", [("DNS", "*.example.com")], False),
        ("other.com", [("DNS", "db.example.com")], False),
        ("127.0.0.1", [("IP Address", "127.0.0.1")], True),
        ("::1", [("IP Address", "0:0:0:0:0:0:0:1\n")], True),
        ("127.0.0.2", [("IP Address", "127.0.0.1"), ("DNS", "127.0.0.2")], False),
    ],
)
def test_host_matches_certificate(
    host: str, alt_names: list[tuple[str, str]], expected: bool
) -> None:
    assert host_matches_certificate(host, {"subjectAltName": tuple(alt_names)}) is expected


def test_common_name_counts_only_without_dns_names() -> None:
    subject = ((("commonName", "db.example.com"),),)
    assert host_matches_certificate("db.example.com", {"subject": subject})
    cert = {"subject": subject, "subjectAltName": (("DNS", "other.example.com"),)}
    assert not host_matches_certificate("db.example.com", cert)


def test_format_name() -> None:
    name = ((("countryName", "US"),), (("organizationName", "Amazon"),), (("commonName", "x"),))
    assert format_name(name) == "C=US, O=Amazon, CN=x"


def test_report_shape_and_exit_code() -> None:
    report = Report(
        [
            Step("sources", True, 0.5, {"source": "DB_SECRET"}),
            Step("dns", False, 1.0, {}, "does not resolve", "check the host", 69),
        ]
    )
    assert report.exit_code == 69
    assert json.loads(report.to_json()) == {
        "ok": False,
        "steps": [
            {
                "name": "sources",
                "ok": True,
                "elapsed_ms": 0.5,
                "detail": {"source": "DB_SECRET"},
                "error": None,
                "hint": None,
            },
            {
                "name": "dns",
                "ok": False,
                "elapsed_ms": 1.0,
                "detail": {},
                "error": "does not resolve",
                "hint": "check the host",
            },
        ],
    }
    assert Report([Step("sources", True, 0.1)]).exit_code == 0


def test_report_redacts_known_secrets() -> None:
    Secret(SECRET_PASSWORD)  # known to the redaction from now on
    report = Report([Step("auth", False, 1.0, {"message": SECRET_PASSWORD}, SECRET_PASSWORD)])
    assert_no_secret(report.to_json())
    assert_no_secret(report.to_text())
