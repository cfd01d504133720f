"""The harness itself: the servers accept only verified TLS with the right password, the
private servers stop and start, the environment is isolated, and the leak guard bites."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pymysql
import pytest

from leakguard import assert_no_secret, register_secret, spellings
from servers import (
    MISMATCH_HOST,
    NASTY_PASSWORDS,
    Certificates,
    MakeMariaDBServer,
    MakePostgresServer,
    MariaDBServer,
    PostgresServer,
    has_ipv6_loopback,
    unique_name,
    wait_for,
)

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")


@pytest.fixture
def pg_user(pg_server: PostgresServer, secret_password: str) -> str:
    name = unique_name("u")
    pg_server.create_user(name, secret_password)
    return name


@pytest.fixture
def mariadb_user(mariadb_server: MariaDBServer, secret_password: str) -> str:
    name = unique_name("u")
    mariadb_server.create_user(name, secret_password)
    return name


def pg_connect_error(**kwargs: Any) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(**kwargs).close()
    return str(caught.value)


def pg_current_user(**kwargs: Any) -> str:
    with psycopg.connect(**kwargs) as conn:
        row = conn.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        user, encrypted = row.fetchone() or ("", False)
    assert encrypted
    return str(user)


def mysql_connect_error(**kwargs: Any) -> tuple[int, str]:
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql.connect(**kwargs).close()
    code, message = caught.value.args
    return int(code), str(message)


def mysql_current_user(**kwargs: Any) -> str:
    conn = pymysql.connect(**kwargs)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            (_, cipher) = cursor.fetchone()
            cursor.execute("SELECT CURRENT_USER()")
            (user,) = cursor.fetchone()
    finally:
        conn.close()
    assert cipher, "the session is not encrypted"
    return str(user).split("@")[0]


# --- PostgreSQL ---------------------------------------------------------------------------


def test_pg_admin_logs_in_with_verified_tls(pg_server: PostgresServer) -> None:
    kwargs = pg_server.connect_kwargs(pg_server.admin_user, pg_server.admin_password)
    assert pg_current_user(**kwargs) == pg_server.admin_user


@pytest.mark.parametrize("password", NASTY_PASSWORDS, ids=range(len(NASTY_PASSWORDS)))
def test_pg_user_with_nasty_password_logs_in(pg_server: PostgresServer, password: str) -> None:
    name = unique_name("u")
    pg_server.create_user(name, password)
    assert pg_current_user(**pg_server.connect_kwargs(name, password)) == name


def test_pg_wrong_password_is_refused(pg_server: PostgresServer, pg_user: str) -> None:
    error = pg_connect_error(**pg_server.connect_kwargs(pg_user, "not the password"))
    assert "password authentication failed" in error


def test_pg_plaintext_is_refused(
    pg_server: PostgresServer, pg_user: str, secret_password: str
) -> None:
    kwargs = pg_server.connect_kwargs(pg_user, secret_password) | {"sslmode": "disable"}
    assert "no encryption" in pg_connect_error(**kwargs)


def test_pg_other_ca_is_refused(
    pg_server: PostgresServer, certs: Certificates, pg_user: str, secret_password: str
) -> None:
    kwargs = pg_server.connect_kwargs(pg_user, secret_password)
    kwargs["sslrootcert"] = str(certs.other_ca_file)
    assert "certificate verify failed" in pg_connect_error(**kwargs)


def test_pg_host_name_mismatch(
    pg_server: PostgresServer, pg_user: str, secret_password: str
) -> None:
    kwargs = pg_server.connect_kwargs(pg_user, secret_password, host=MISMATCH_HOST)
    assert 'does not match host name "127.0.0.2"' in pg_connect_error(**kwargs)
    # The same address with chain-only verification works: the name is the only problem.
    assert pg_current_user(**kwargs | {"sslmode": "verify-ca"}) == pg_user


@needs_ipv6
def test_pg_ipv6_loopback(pg_server: PostgresServer, pg_user: str, secret_password: str) -> None:
    kwargs = pg_server.connect_kwargs(pg_user, secret_password, host="::1")
    assert pg_current_user(**kwargs) == pg_user


def test_pg_databases(pg_server: PostgresServer, pg_user: str) -> None:
    name = unique_name("db")
    assert not pg_server.database_exists(name)
    pg_server.create_database(name, owner=pg_user)
    assert pg_server.database_exists(name)
    pg_server.drop_database(name)
    assert not pg_server.database_exists(name)


def test_pg_admin_sql_returns_values(pg_server: PostgresServer) -> None:
    assert pg_server.admin_sql("SELECT 1, 'two'; SELECT 3;") == "1|two\n3\n"


def test_pg_server_starts_later_and_restarts(
    make_pg_server: MakePostgresServer, secret_password: str
) -> None:
    server = make_pg_server(start=False)
    kwargs = server.connect_kwargs(server.admin_user, server.admin_password)
    assert "Connection refused" in pg_connect_error(**kwargs)

    began = time.monotonic()
    server.start(wait=False)
    assert time.monotonic() - began < 1.0, "start(wait=False) waited"
    wait_for(server.is_ready, timeout=30, what="PostgreSQL")
    server.create_user("late", secret_password)

    server.restart()
    assert pg_current_user(**server.connect_kwargs("late", secret_password)) == "late"

    server.stop()
    assert not server.is_running()
    assert "Connection refused" in pg_connect_error(**kwargs)


@pytest.mark.server
def test_pg_cleanup_removes_everything(certs: Certificates) -> None:
    server = PostgresServer(certs)
    server.start()
    server.cleanup()
    assert not server.is_running()
    assert not server.directory.exists()
    server.cleanup()  # idempotent


# --- MariaDB ------------------------------------------------------------------------------


def test_mariadb_has_no_root_over_tcp(mariadb_server: MariaDBServer) -> None:
    code, _ = mysql_connect_error(**mariadb_server.connect_kwargs("root", ""))
    # 1130 "Host '127.0.0.1' is not allowed to connect" on a fresh server; 1045 once
    # another test has created a user@'%' (MariaDB then matches that entry first).
    assert code in (1045, 1130)


@pytest.mark.parametrize("password", NASTY_PASSWORDS, ids=range(len(NASTY_PASSWORDS)))
def test_mariadb_user_with_nasty_password_logs_in(
    mariadb_server: MariaDBServer, password: str
) -> None:
    name = unique_name("u")
    mariadb_server.create_user(name, password)
    assert mysql_current_user(**mariadb_server.connect_kwargs(name, password)) == name


def test_mariadb_wrong_password_is_refused(
    mariadb_server: MariaDBServer, mariadb_user: str
) -> None:
    code, _ = mysql_connect_error(**mariadb_server.connect_kwargs(mariadb_user, "wrong"))
    assert code == 1045


def test_mariadb_plaintext_is_refused_with_1045(
    mariadb_server: MariaDBServer, mariadb_user: str, secret_password: str
) -> None:
    kwargs = mariadb_server.connect_kwargs(mariadb_user, secret_password)
    del kwargs["ssl"]
    code, _ = mysql_connect_error(**kwargs, ssl_disabled=True)
    assert code == 1045


def test_pymysql_without_ssl_arguments_encrypts_but_verifies_nothing(
    mariadb_server: MariaDBServer, mariadb_user: str, secret_password: str
) -> None:
    """PyMySQL 1.2 tries TLS by default ("preferred") with no verification at all: it
    logs in to the mismatching address with a certificate nobody asked it to trust."""
    kwargs = mariadb_server.connect_kwargs(mariadb_user, secret_password, host=MISMATCH_HOST)
    del kwargs["ssl"]
    assert mysql_current_user(**kwargs) == mariadb_user


def test_mariadb_other_ca_is_refused(
    mariadb_server: MariaDBServer, certs: Certificates, mariadb_user: str, secret_password: str
) -> None:
    kwargs = mariadb_server.connect_kwargs(mariadb_user, secret_password)
    kwargs["ssl"] = ssl.create_default_context(cafile=str(certs.other_ca_file))
    code, message = mysql_connect_error(**kwargs)
    assert code == 2003
    assert "CERTIFICATE_VERIFY_FAILED" in message


def test_mariadb_host_name_mismatch(
    mariadb_server: MariaDBServer, certs: Certificates, mariadb_user: str, secret_password: str
) -> None:
    kwargs = mariadb_server.connect_kwargs(mariadb_user, secret_password, host=MISMATCH_HOST)
    code, message = mysql_connect_error(**kwargs)
    assert code == 2003
    assert "IP address mismatch" in message
    # The same address with chain-only verification works: the name is the only problem.
    kwargs["ssl"] = certs.client_context(check_hostname=False)
    assert mysql_current_user(**kwargs) == mariadb_user


@needs_ipv6
def test_mariadb_ipv6_loopback(
    mariadb_server: MariaDBServer, mariadb_user: str, secret_password: str
) -> None:
    kwargs = mariadb_server.connect_kwargs(mariadb_user, secret_password, host="::1")
    assert mysql_current_user(**kwargs) == mariadb_user


def test_mariadb_databases_and_locks(
    mariadb_server: MariaDBServer, mariadb_user: str, secret_password: str
) -> None:
    name = unique_name("db")
    assert not mariadb_server.database_exists(name)
    conn = pymysql.connect(**mariadb_server.connect_kwargs(mariadb_user, secret_password))
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute("SELECT GET_LOCK('cloudboot-test', 5)")
            assert cursor.fetchone() == (1,)
    finally:
        conn.close()
    assert mariadb_server.database_exists(name)
    mariadb_server.drop_database(name)
    assert not mariadb_server.database_exists(name)


def test_mariadb_server_starts_later_and_restarts(
    make_mariadb_server: MakeMariaDBServer, secret_password: str
) -> None:
    server = make_mariadb_server(start=False)
    kwargs = server.connect_kwargs("late", secret_password)
    code, message = mysql_connect_error(**kwargs)
    assert code == 2003
    assert "Connection refused" in message

    began = time.monotonic()
    server.start(wait=False)
    assert time.monotonic() - began < 1.0, "start(wait=False) waited"
    wait_for(server.is_ready, timeout=30, what="MariaDB")
    server.create_user("late", secret_password)

    server.restart()
    assert mysql_current_user(**kwargs) == "late"

    server.stop()
    assert not server.is_running()
    assert mysql_connect_error(**kwargs)[0] == 2003


# --- Environment --------------------------------------------------------------------------


def test_each_test_gets_a_clean_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGPASSWORD", "DB_HOST", "WORDPRESS_DB_PASSWORD", "DATABASE_URL",
                 "CLOUDBOOT_MODE", "COPILOT_SECRET", "MYSQL_PWD"):  # fmt: skip
        monkeypatch.setenv(name, "from-the-outside")
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import os
        from pathlib import Path

        def test_inside():
            assert "from-the-outside" not in os.environ.values()
            home = Path(os.environ["HOME"])
            assert home.is_dir() and not any(home.iterdir())
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_home_is_fresh(home: Path) -> None:
    assert home == Path(os.environ["HOME"])
    assert not any(home.iterdir())


# --- Leak guard ---------------------------------------------------------------------------


LEAK = "leak-g7Kq:p@ss/w?rd#é'\\"  # registered only in the inner run


def test_leakguard_fails_tests_that_show_a_secret(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A separate process, so nothing the inner tests print or log reaches this test.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    # Under CI=true pytest repeats each failure's full message in its summary; the counts
    # below are of the failure sections, whatever the environment.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    pytester.makepyfile(
        f"""
        import logging, sys, urllib.parse
        import pytest
        from leakguard import register_secret

        SECRET = register_secret({LEAK!r})

        def test_prints():
            print("password is", SECRET)

        def test_logs_url_encoded():
            logging.getLogger("app").warning("url %s", urllib.parse.quote(SECRET, safe=""))

        def test_writes_bytes_repr_to_stderr():
            sys.stderr.write(repr(SECRET.encode()))

        def test_fails_with_secret_in_diff():
            assert SECRET == "something else"

        def test_clean():
            print("nothing to see")

        @pytest.mark.leakguard_allow(SECRET)
        def test_allowed():
            print(SECRET)
        """
    )
    result = pytester.runpytest_subprocess("-p", "leakguard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=4)
    output = result.stdout.str() + result.stderr.str()
    assert output.count("leakguard: test output shows a secret") == 3
    assert output.count("leakguard: redacted") == 1  # the diff of a test failing anyway
    assert not [form for form in spellings(LEAK).values() if form in output]
    assert "<SECRET>" in output


def test_assert_no_secret_finds_encoded_spellings(secret_password: str) -> None:
    assert_no_secret("nothing here")
    for shown in (
        secret_password,
        quote(secret_password, safe=""),
        repr(secret_password),
        repr(secret_password.encode()),
    ):
        with pytest.raises(AssertionError) as caught:
            assert_no_secret(f"before {shown} after".encode())
        assert_no_secret(str(caught.value))  # the message does not show it either
        assert "<SECRET>" in str(caught.value)
    assert_no_secret(f"x {secret_password} y", allow=[secret_password])


def test_register_secret_refuses_tiny_values() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        register_secret("pw")


def test_secrets_wrapped_by_cloudboot_are_guarded() -> None:
    from bootstrap.secret import Secret  # noqa: PLC0415 - the module the guard reads

    value = "harvested-" + unique_name()
    Secret(value)
    with pytest.raises(AssertionError, match="secret"):
        assert_no_secret(f"oops {value}")
    Secret("password")  # a dummy word: honest messages say "password"
    assert_no_secret("password authentication failed")
